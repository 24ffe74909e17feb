"""The shipped image and Kubernetes example keep the admin listener off the pod network.

The admin listener serves bundle status and metrics; only the probes need to be
reachable from the kubelet, so only the probes listener may bind a non-loopback
address, and the Deployment's probes must target it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from sidecar.cli import _parser
from sidecar.settings import parse_listen

ROOT = Path(__file__).resolve().parents[2]
LOOPBACK = ("127.0.0.1", "::1", "localhost")


def run_args(argv: list[str]) -> Any:
    args = _parser().parse_args(argv)
    assert args.command == "run"
    return args


def assert_only_probes_exposed(argv: list[str]) -> Any:
    args = run_args(argv)
    assert args.admin is not None, "the admin address should be explicit in a shipped manifest"
    assert parse_listen(args.admin, "admin").host in LOOPBACK, argv
    assert args.http is None or parse_listen(args.http, "http").host in LOOPBACK, argv
    assert args.probes is not None, argv
    return args


def test_image_default_command() -> None:
    text = (ROOT / "Dockerfile").read_text()
    cmd = re.search(r"^CMD (\[.*\])$", text, re.MULTILINE)
    assert cmd is not None
    args = assert_only_probes_exposed(json.loads(cmd.group(1)))
    port = parse_listen(args.probes, "probes").port
    assert re.search(rf"^EXPOSE {port}$", text, re.MULTILINE), "EXPOSE only the probes port"


def test_kubernetes_example_probes_the_probes_listener() -> None:
    doc = yaml.safe_load((ROOT / "k8s" / "base" / "deployment.yaml").read_text())
    containers = doc["spec"]["template"]["spec"]["containers"]
    sidecar = next(c for c in containers if c["name"] == "sidecar")
    args = assert_only_probes_exposed(sidecar["args"])
    probes_port = parse_listen(args.probes, "probes").port
    named = {p["name"]: p["containerPort"] for p in sidecar.get("ports", [])}
    assert set(named.values()) == {probes_port}, named
    for probe in ("readinessProbe", "livenessProbe"):
        port = sidecar[probe]["httpGet"]["port"]
        assert named.get(port, port) == probes_port, (probe, port)
