"""`sidecar check`: validate a bundle and print a one-screen summary or every error."""

from __future__ import annotations

from typing import TextIO

from sidecar.bundle.compile import BundleInvalid, load_snapshot
from sidecar.bundle.load import DEFAULT_LIMITS, BundleReadError, ReadLimits
from sidecar.bundle.public import public_text
from sidecar.bundle.snapshot import Snapshot


def load_or_report(
    source: str, err: TextIO, limits: ReadLimits = DEFAULT_LIMITS
) -> Snapshot | None:
    """The compiled bundle, or None after printing every problem (for CLI commands)."""
    try:
        return load_snapshot(source, limits)
    except BundleReadError as exc:
        print(f"error: {exc}", file=err)
    except BundleInvalid as exc:
        for problem in exc.problems:
            print(str(problem), file=err)
        print(f"{source}: invalid bundle ({len(exc.problems)} error(s))", file=err)
    except Exception as exc:  # a bundle is reported on, never crashes the CLI
        print(f"error: {source}: the bundle could not be loaded: {type(exc).__name__}", file=err)
    return None


def check(source: str, out: TextIO, err: TextIO, limits: ReadLimits = DEFAULT_LIMITS) -> int:
    snap = load_or_report(source, err, limits)
    if snap is None:
        return 1
    print(f"bundle {snap.source}: OK", file=out)
    print(f"  revision   {snap.revision}", file=out)
    print(f"  digest     {snap.digest[:16]}", file=out)
    print(f"  identity   {snap.identity.describe()}", file=out)
    print(f"  policies   {snap.authorizer.policy_count} (Cedar, default deny)", file=out)
    print(f"  upstreams  {len(snap.upstreams)}", file=out)
    for spec in snap.upstreams.values():
        # A summary lands in CI logs: a password in the URL is not part of it.
        where = public_text(spec.base_url) if spec.kind == "http" else "built-in mock"
        print(f"    {spec.name:<16} {spec.provider_name:<12} {where}", file=out)
    print(f"  routes     {len(snap.routes)}", file=out)
    for route in snap.routes:
        print(
            f"    {route.name:<16} path {route.path_glob:<22} model {route.model_glob:<14} "
            f"-> {route.upstream}",
            file=out,
        )
    if snap.models:
        print(f"  models     {', '.join(snap.models)}", file=out)
    for warning in snap.warnings:
        print(f"  warning: {warning}", file=out)
    return 0
