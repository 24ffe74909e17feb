"""Read a bundle from a directory or a .tar.gz into a document and a content hash.

Reading is plain blocking file I/O: callers run it in a worker thread so the
event loop keeps serving while a bundle is read.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

MAX_BUNDLE_BYTES = 16 * 1024 * 1024
MAX_FILES = 1000
ROOT_NAMES = ("bundle.yaml", "bundle.yml", "bundle.json")


class BundleReadError(Exception):
    """The bundle could not be read or parsed at all (no field path applies)."""


@dataclass(frozen=True)
class RawBundle:
    source: str
    document: Any
    files: dict[str, bytes]  # every file of the bundle, by path relative to its root
    digest: str  # sha256 over all files: equal digests mean nothing changed


def read_bundle(source: str | os.PathLike[str]) -> RawBundle:
    path = Path(source)
    if path.is_dir():
        files = _read_dir(path)
    elif path.is_file():
        if not path.name.endswith((".tar.gz", ".tgz")):
            raise BundleReadError(
                f"{path}: a bundle is a directory or a .tar.gz holding bundle.yaml"
            )
        files = _read_tar(path.read_bytes(), str(path))
    else:
        raise BundleReadError(f"{path}: no such file or directory")
    root = next((name for name in ROOT_NAMES if name in files), None)
    if root is None:
        raise BundleReadError(f"{path}: the bundle has no bundle.yaml (or bundle.json) at its root")
    return RawBundle(str(path), parse_document(files[root], root), files, digest(files))


def parse_document(data: bytes, name: str) -> Any:
    try:
        if name.endswith(".json"):
            return json.loads(data)
        return yaml.load(data, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (ValueError, yaml.YAMLError) as exc:
        raise BundleReadError(
            f"{name}: not valid {'JSON' if name.endswith('.json') else 'YAML'}: {exc}"
        ) from None


def digest(files: dict[str, bytes]) -> str:
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + len(files[name]).to_bytes(8, "big") + files[name])
    return h.hexdigest()


def _read_dir(root: Path) -> dict[str, bytes]:
    """All regular files under root, following symlinks, skipping dot-entries.

    Kubernetes ConfigMap volumes hold `..data` and `..<timestamp>` directories
    beside symlinks named after the keys; reading through the visible names
    sees exactly the current generation.
    """
    files: dict[str, bytes] = {}
    total = 0
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            full = Path(dirpath, name)
            if not full.is_file():
                continue
            data = full.read_bytes()
            total += len(data)
            if total > MAX_BUNDLE_BYTES or len(files) >= MAX_FILES:
                raise BundleReadError(f"{root}: bundle is larger than {MAX_BUNDLE_BYTES} bytes")
            files[full.relative_to(root).as_posix()] = data
    return files


def _read_tar(data: bytes, label: str) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    total = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                name = member.name.removeprefix("./")
                if name.startswith("/") or ".." in name.split("/"):
                    raise BundleReadError(f"{label}: unsafe path in archive: {member.name!r}")
                total += member.size
                if total > MAX_BUNDLE_BYTES or len(files) >= MAX_FILES:
                    raise BundleReadError(
                        f"{label}: bundle is larger than {MAX_BUNDLE_BYTES} bytes"
                    )
                extracted = tar.extractfile(member)
                if extracted is not None:
                    files[name] = extracted.read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise BundleReadError(f"{label}: not a readable .tar.gz: {exc}") from None
    return files
