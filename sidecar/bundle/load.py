"""Read a bundle from a directory or a .tar.gz into a document and a content hash.

Reading is plain blocking file I/O: callers run it in a worker thread so the
event loop keeps serving while a bundle is read.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import posixpath
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sidecar.bundle.parse import DocumentShapeError, ShapeLimits, parse_json, parse_yaml

# The bounds a bundle must keep, checked before anything is parsed or held in
# memory. A real bundle is a few files and a few kilobytes nested a dozen
# levels; these leave ample room and keep a hostile one from costing more
# than a bounded read. The first three can be changed (SIDECAR_BUNDLE_MAX_*).
MAX_BUNDLE_BYTES = 16 * 1024 * 1024  # all files together (and the .tar.gz itself)
MAX_FILES = 1000  # files, plus directories and other archive members
MAX_DEPTH = 64  # nesting of mappings and lists in bundle.yaml / .json
DEPTH_CEILING = 256  # deeper documents reach Python's recursion limit in later stages
MAX_NODES = 1_000_000  # values in bundle.yaml once YAML aliases are expanded
MAX_POLICY_NESTING = 200  # how deep one Cedar policy's expression may parse
ROOT_NAMES = ("bundle.yaml", "bundle.yml", "bundle.json")

SHAPE = ShapeLimits(max_depth=MAX_DEPTH, max_nodes=MAX_NODES)


@dataclass(frozen=True)
class ReadLimits:
    max_bytes: int = MAX_BUNDLE_BYTES
    max_files: int = MAX_FILES
    max_depth: int = MAX_DEPTH

    @property
    def shape(self) -> ShapeLimits:
        return ShapeLimits(max_depth=self.max_depth, max_nodes=MAX_NODES)


DEFAULT_LIMITS = ReadLimits()


class BundleReadError(Exception):
    """The bundle could not be read or parsed at all (no field path applies)."""


@dataclass(frozen=True)
class RawBundle:
    source: str
    document: Any
    files: dict[str, bytes]  # every file of the bundle, by path relative to its root
    digest: str  # sha256 over all files: equal digests mean nothing changed


def read_bundle(source: str | os.PathLike[str], limits: ReadLimits = DEFAULT_LIMITS) -> RawBundle:
    path = Path(source)
    if path.is_dir():
        files = _read_dir(path, limits)
    elif path.is_file():
        if not path.name.endswith((".tar.gz", ".tgz")):
            raise BundleReadError(
                f"{path}: a bundle is a directory or a .tar.gz holding bundle.yaml"
            )
        data = _read_capped(path, limits.max_bytes, str(path), limits)
        files = _read_tar(data, str(path), limits)
    else:
        raise BundleReadError(f"{path}: no such file or directory")
    root = next((name for name in ROOT_NAMES if name in files), None)
    if root is None:
        raise BundleReadError(f"{path}: the bundle has no bundle.yaml (or bundle.json) at its root")
    document = parse_document(files[root], root, limits.shape)
    return RawBundle(str(path), document, files, digest(files))


def parse_document(data: bytes, name: str, shape: ShapeLimits = SHAPE) -> Any:
    kind = "JSON" if name.endswith(".json") else "YAML"
    try:
        return parse_json(data, shape) if kind == "JSON" else parse_yaml(data, shape)
    except DocumentShapeError as exc:
        raise BundleReadError(f"{name}: refused: {exc}") from None
    except (ValueError, yaml.YAMLError, RecursionError) as exc:
        raise BundleReadError(f"{name}: not valid {kind}: {exc}") from None


def digest(files: dict[str, bytes]) -> str:
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + len(files[name]).to_bytes(8, "big") + files[name])
    return h.hexdigest()


def _too_large(label: str, limits: ReadLimits) -> BundleReadError:
    return BundleReadError(f"{label}: bundle is larger than {limits.max_bytes} bytes (the limit)")


def _too_many(label: str, limits: ReadLimits) -> BundleReadError:
    return BundleReadError(
        f"{label}: bundle has more than {limits.max_files} files and directories (the limit)"
    )


def _read_capped(path: Path, budget: int, label: str, limits: ReadLimits) -> bytes:
    """At most `budget` bytes of a file, read without trusting its size up front."""
    try:
        with path.open("rb") as f:
            data = f.read(budget + 1)
    except OSError as exc:
        raise BundleReadError(f"{path}: cannot read: {exc.strerror}") from None
    if len(data) > budget:
        raise _too_large(label, limits)
    return data


def _read_dir(root: Path, limits: ReadLimits) -> dict[str, bytes]:
    """All regular files under root, following symlinks, skipping dot-entries.

    Kubernetes ConfigMap volumes hold `..data` and `..<timestamp>` directories
    beside symlinks named after the keys; reading through the visible names
    sees exactly the current generation. A directory reached twice (a symlink
    loop) is walked once; directories count toward the file limit.
    """
    files: dict[str, bytes] = {}
    total = 0
    entries = 0
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        entries += len(dirnames)
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            full = Path(dirpath, name)
            if not full.is_file():
                continue
            entries += 1
            if entries > limits.max_files:
                raise _too_many(str(root), limits)
            data = _read_capped(full, limits.max_bytes - total, str(root), limits)
            total += len(data)
            files[full.relative_to(root).as_posix()] = data
        if entries > limits.max_files:
            raise _too_many(str(root), limits)
    return files


# Room for tar's own bytes beside the files: a header and padding per member
# (more for long names), and the end-of-archive record.
_TAR_OVERHEAD_PER_MEMBER = 4096
_TAR_END_RECORD = 10240


def _inflate(data: bytes, label: str, limits: ReadLimits) -> bytes:
    """The archive decompressed, refusing to inflate past what its limits allow.

    tarfile reads a long-name or PAX header's whole claimed size into memory
    before yielding the member, so the bound must hold on the stream itself.
    """
    cap = limits.max_bytes + (limits.max_files + 1) * _TAR_OVERHEAD_PER_MEMBER + _TAR_END_RECORD
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as stream:
            raw = stream.read(cap + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise BundleReadError(f"{label}: not a readable .tar.gz: {exc}") from None
    if len(raw) > cap:
        raise _too_large(label, limits)
    return raw


def _read_tar(data: bytes, label: str, limits: ReadLimits) -> dict[str, bytes]:
    """The regular files of an archive; every member counts toward the limits.

    Sizes are checked from each header before the member is read or skipped,
    so a header claiming gigabytes is refused without inflating them. A name
    that appears twice is an error: which copy would win depends on the tool
    that made the archive, and the bundle reviewed may not be the one served.
    """
    files: dict[str, bytes] = {}
    names: set[str] = set()
    total = 0
    raw = _inflate(data, label, limits)
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
            for count, member in enumerate(tar, start=1):
                if count > limits.max_files:
                    raise _too_many(label, limits)
                total += max(member.size, 0)
                if total > limits.max_bytes:
                    raise _too_large(label, limits)
                name = member.name
                parts = [p for p in name.split("/") if p not in ("", ".")]
                if name.startswith("/") or ".." in parts:
                    raise BundleReadError(f"{label}: unsafe path in archive: {member.name!r}")
                normal = posixpath.join(*parts) if parts else "."
                if normal in names:
                    raise BundleReadError(
                        f"{label}: {normal!r} appears more than once in the archive"
                    )
                names.add(normal)
                if not member.isfile():
                    continue
                extracted = tar.extractfile(member)
                if extracted is not None:
                    files[normal] = extracted.read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise BundleReadError(f"{label}: not a readable .tar.gz: {exc}") from None
    return files
