"""The policy bundle: read, validate, compile into an immutable snapshot, watch."""
