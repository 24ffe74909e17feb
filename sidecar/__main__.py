"""Allow `python -m sidecar` to behave like the `sidecar` console script."""

from sidecar.cli import main

raise SystemExit(main())
