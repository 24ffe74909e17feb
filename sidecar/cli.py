"""The `sidecar` command: run, check, test, schema."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from sidecar import __version__


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sidecar",
        description="Policy-and-proxy sidecar for AI agents.",
    )
    parser.add_argument("--version", action="version", version=f"sidecar {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="serve the proxy and admin listeners",
        description="Serve the proxy and admin listeners on a policy bundle, reloading it "
        "when it changes. Settings: flags, then SIDECAR_* environment variables, then defaults.",
    )
    run.add_argument(
        "--bundle",
        metavar="PATH",
        help="bundle directory or .tar.gz "
        "(env SIDECAR_BUNDLE; default: the embedded default bundle)",
    )
    run.add_argument(
        "--http",
        metavar="HOST:PORT",
        help="proxy listener (env SIDECAR_HTTP; default 127.0.0.1:8700)",
    )
    run.add_argument(
        "--admin",
        metavar="HOST:PORT",
        help="admin listener: /healthz /readyz /bundle /metrics "
        "(env SIDECAR_ADMIN; default 127.0.0.1:8702)",
    )
    run.add_argument(
        "--probes",
        metavar="HOST:PORT",
        help="a listener serving only /healthz and /readyz, for kubelet probes on the pod IP "
        "while --admin stays on loopback (env SIDECAR_PROBES; default off)",
    )
    run.add_argument(
        "--max-body-bytes",
        type=int,
        metavar="N",
        help="largest request body accepted (env SIDECAR_MAX_BODY_BYTES; default 16 MiB)",
    )
    for flag, default, text in RESOURCE_FLAGS:
        env = "SIDECAR_" + flag.removeprefix("--").replace("-", "_").upper()
        run.add_argument(flag, type=int, metavar="N", help=f"{text} (env {env}; default {default})")
    run.add_argument(
        "--otel-exporter",
        choices=["none", "console", "otlp"],
        help="where spans and metrics go (env SIDECAR_OTEL_EXPORTER; default none; "
        "otlp reads the standard OTEL_EXPORTER_OTLP_* variables)",
    )
    run.add_argument(
        "--agent",
        metavar="NAME",
        help="the pod's own agent identity (env SIDECAR_AGENT; default 'agent')",
    )
    run.add_argument(
        "--tenant",
        metavar="NAME",
        help="the pod's tenant (env SIDECAR_TENANT; default 'default')",
    )
    run.add_argument(
        "--decision-log",
        metavar="WHERE",
        help="one JSON line per decision: stdout, stderr, none or a file path "
        "(env SIDECAR_DECISION_LOG; default stdout)",
    )
    run.add_argument(
        "--decision-log-content",
        action="store_true",
        default=None,
        help="also log the message texts of each call (env SIDECAR_DECISION_LOG_CONTENT; "
        "default off)",
    )
    run.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        help="env SIDECAR_LOG_LEVEL; default info",
    )

    check = sub.add_parser(
        "check",
        help="validate a bundle and print a summary",
        description="Validate a bundle. Exit 0 with a summary, or 1 with every error and the "
        "path of the bad field.",
    )
    check.add_argument("bundle", metavar="BUNDLE", help="bundle directory or .tar.gz")

    test = sub.add_parser(
        "test",
        help="run the bundle's decision tests",
        description="Run the decision tests in the bundle's 'tests' section against its "
        "compiled policies. Exit 0 when all pass, 1 on any failure or an invalid bundle.",
    )
    test.add_argument("bundle", metavar="BUNDLE", help="bundle directory or .tar.gz")
    test.add_argument("--agent", metavar="NAME", help="pod identity for principal 'pod'")
    test.add_argument("--tenant", metavar="NAME", help="pod tenant for principal 'pod'")

    sub.add_parser(
        "schema",
        help="print the bundle JSON Schema",
        description="Print the JSON Schema of bundle.yaml, for editors and CI validation.",
    )
    return parser


# What one caller may hold of the sidecar; see docs/operations.md, Resources.
RESOURCE_FLAGS = (
    ("--body-timeout-ms", "60000", "time a request body may take to arrive, in ms"),
    ("--body-min-rate", "16384", "slowest a request body may arrive, bytes/s after 5 s"),
    ("--max-connections", "1024", "connections served at once on the proxy listener"),
    (
        "--max-buffered-bytes",
        "4 x --max-body-bytes",
        "request body bytes held at once, all connections together",
    ),
    ("--max-event-bytes", "8 MiB", "largest upstream stream event relayed"),
    ("--max-response-bytes", "64 MiB", "largest upstream response relayed"),
)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "check":
        import os

        from sidecar.bundle.check import check
        from sidecar.settings import SettingsError, bundle_limits

        try:
            limits = bundle_limits(os.environ)
        except SettingsError as exc:
            print(f"sidecar: {exc}", file=sys.stderr)
            return 2
        try:
            return check(args.bundle, sys.stdout, sys.stderr, limits)
        except BrokenPipeError:  # `sidecar check B | head` is fine
            return 0
    if args.command == "test":
        return _test(args)
    if args.command == "schema":
        from importlib import resources

        sys.stdout.write(resources.files("sidecar.bundle").joinpath("schema.json").read_text())
        return 0
    return _run(args)


def _test(args: argparse.Namespace) -> int:
    from sidecar.authz.testing import test_command
    from sidecar.identity.principal import PodIdentity
    from sidecar.settings import Settings, SettingsError

    try:
        settings = Settings.resolve(agent=args.agent, tenant=args.tenant)
    except SettingsError as exc:
        print(f"sidecar: {exc}", file=sys.stderr)
        return 2
    pod = PodIdentity(settings.agent, settings.tenant)
    try:
        return test_command(args.bundle, sys.stdout, sys.stderr, pod, settings.bundle_limits)
    except BrokenPipeError:
        return 0


def _run(args: argparse.Namespace) -> int:
    from sidecar.logs import setup_logging
    from sidecar.settings import Settings, SettingsError

    try:
        settings = Settings.resolve(
            bundle=args.bundle,
            http=args.http,
            admin=args.admin,
            probes=args.probes,
            max_body_bytes=args.max_body_bytes,
            otel_exporter=args.otel_exporter,
            log_level=args.log_level,
            agent=args.agent,
            tenant=args.tenant,
            decision_log=args.decision_log,
            decision_log_content=args.decision_log_content,
            resources={
                flag.removeprefix("--").replace("-", "_"): getattr(
                    args, flag.removeprefix("--").replace("-", "_")
                )
                for flag, _, _ in RESOURCE_FLAGS
            },
        )
    except SettingsError as exc:
        print(f"sidecar: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level)
    from sidecar.server.app import Sidecar

    try:
        import uvloop
    except ImportError:
        runner = asyncio.run
    else:
        runner = uvloop.run
    try:
        runner(Sidecar(settings).run_until_signalled())
    except OSError as exc:
        print(f"sidecar: cannot listen: {exc}", file=sys.stderr)
        return 1
    return 0
