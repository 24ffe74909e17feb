"""Adapters: each turns one wire format into a `Call` and back. No policy here."""
