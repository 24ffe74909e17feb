"""Identity: who is calling, resolved once per call into a Principal."""
