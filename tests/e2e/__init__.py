"""End-to-end tests: the real ``sidecar`` CLI as a subprocess, real SDK clients."""
