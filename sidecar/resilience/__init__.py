"""Deadlines, retries, circuit breakers, fallbacks and hedging for the provider hop."""
