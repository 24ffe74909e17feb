"""Tracing and metrics: one table of names, one setup, instruments the stages use."""
