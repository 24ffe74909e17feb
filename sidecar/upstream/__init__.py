"""Where calls go: HTTP providers over pooled sessions, and the built-in mock."""
