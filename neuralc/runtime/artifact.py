"""The compiled artifact (``.ncz``): one zip holding a model's variants, its weights and a manifest.

Layout::

    manifest.json           format and neuralc versions, model name and signature, source
                            digest, precision, -O level, the variants best first, and the
                            SHA-256 of every other member
    weights.safetensors     the weights, once (the only format neuralc reads weights from)
    graph.nir               the shape-checked graph IR: the signature and the run-time input
                            checks every variant shares (parsed by neuralc's IR parser)
    variants/<name>/...     each variant's files (ONNX protobuf, tensor IR text, engines...)

This module is the container only: reading checks everything a damaged, truncated, tampered
or foreign file can get wrong, each as an :class:`ArtifactError` with a one-line message
naming the file and the problem. Nothing read here is executed: members are bytes whose
digests match the manifest, and the manifest is JSON.

Version rule: an artifact loads when its ``format_version`` is this reader's
:data:`FORMAT_VERSION` and it was written by a neuralc of the same major.minor version as the
one reading it (patch releases read each other's artifacts; a different minor may change the
IR text or a variant's files, so it must recompile from the ``.nr``).
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import re
import zipfile
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FORMAT = "neuralc-artifact"
FORMAT_VERSION = 1
SUFFIX = ".ncz"
MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"
GRAPH = "graph.nir"

# Member names: relative, '/'-separated, no '..', no absolute paths, no odd characters.
_MEMBER_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*(/[A-Za-z0-9_][A-Za-z0-9_.+-]*)*")


class ArtifactError(Exception):
    """The artifact cannot be used: not one, damaged, tampered, or from another neuralc."""


def sha256(data: bytes) -> str:
    """The hex SHA-256 digest the manifest records for a member or the source text."""
    return hashlib.sha256(data).hexdigest()


def neuralc_version() -> str:
    """This neuralc's version (the package's ``__version__``, read without importing upward)."""
    return str(importlib.import_module("neuralc").__version__)


def _major_minor(version: str) -> tuple[str, str] | None:
    parts = version.split(".")
    return (parts[0], parts[1]) if len(parts) >= 2 else None


def version_problem(written_by: str, reader: str) -> str | None:
    """Why an artifact written by neuralc ``written_by`` cannot be read by ``reader``, or None.

    The rule: same major and minor version (``0.1.0`` reads ``0.1.7``, not ``0.2.0``).
    """
    a, b = _major_minor(written_by), _major_minor(reader)
    if a is None:
        return f"it names an unreadable neuralc version {written_by!r}"
    if a == b:
        return None
    return (f"it was written by neuralc {written_by}, and this neuralc {reader} reads artifacts "
            f"of neuralc {'.'.join(b or ('?', '?'))}.x only; recompile the model from its .nr "
            "file with this neuralc")


def check_member_name(name: str) -> str | None:
    """Why ``name`` is not an acceptable member name, or None."""
    if not isinstance(name, str) or not _MEMBER_NAME.fullmatch(name) or ".." in name.split("/"):
        return f"unsafe member name {name!r}"
    return None


@dataclass
class ArtifactData:
    """An artifact in memory: the manifest and the bytes of every other member.

    ``origin`` names where it came from (a path, or ``<memory>``) for messages. Members of an
    artifact that was read have had their digests checked.
    """

    manifest: dict[str, Any]
    members: dict[str, bytes]
    origin: str = "<memory>"

    def member(self, name: str) -> bytes:
        """The bytes of a member the manifest lists (an ArtifactError if it has none)."""
        if name not in self.members:
            raise ArtifactError(f"{self.origin}: has no member '{name}'")
        return self.members[name]

    def to_bytes(self) -> bytes:
        """The zip file: the manifest first (so ``unzip -l`` shows it at the top)."""
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
            z.writestr(MANIFEST, json.dumps(self.manifest, indent=2, sort_keys=True) + "\n")
            for name, data in self.members.items():
                z.writestr(name, data)
        return buf.getvalue()

    def write(self, path: str | Path) -> Path:
        """Write the zip at ``path`` (through a temporary name, so no half file is left)."""
        p = Path(path)
        tmp = p.with_name(f".{p.name}.tmp")
        try:
            tmp.write_bytes(self.to_bytes())
            tmp.replace(p)
        finally:
            if tmp.exists():
                tmp.unlink()
        return p


def listed_members(manifest: Mapping[str, Any]) -> dict[str, str]:
    """Every member the manifest names, with its digest: shared members and variant files."""
    out = dict(manifest.get("members", {}))
    for v in manifest.get("variants", []):
        out.update(v.get("files", {}))
    return out


def pack(manifest: dict[str, Any], shared: Mapping[str, bytes],
         variant_files: Iterable[Mapping[str, bytes]]) -> ArtifactData:
    """An artifact from a manifest without digests, the shared members and each variant's
    files (in the order of ``manifest['variants']``); fills in every digest."""
    members: dict[str, bytes] = {}
    manifest = dict(manifest)
    manifest["members"] = {}
    for name, data in shared.items():
        members[name] = data
        manifest["members"][name] = sha256(data)
    variants = []
    for entry, files in zip(manifest.get("variants", []), variant_files):
        entry = dict(entry)
        entry["files"] = {}
        for name, data in files.items():
            problem = check_member_name(name)
            if problem or name in members:
                raise ValueError(problem or f"two members are named '{name}'")
            members[name] = data
            entry["files"][name] = sha256(data)
        variants.append(entry)
    manifest["variants"] = variants
    return ArtifactData(manifest, members)


# -- reading --------------------------------------------------------------------------------


def read_artifact(path: str | Path) -> ArtifactData:
    """Read and check an artifact file (FileNotFoundError if there is none)."""
    p = Path(path)
    if p.is_dir():
        raise ArtifactError(f"{p}: is a directory, not a neuralc artifact")
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"no such artifact: {p}") from None
    except OSError as e:
        raise ArtifactError(f"{p}: cannot be read ({e.strerror})") from None
    return read_artifact_bytes(data, str(p))


def read_artifact_bytes(data: bytes, origin: str = "<memory>") -> ArtifactData:
    """Check an artifact's bytes: zip, manifest, versions, member names and digests."""
    if not data:
        raise ArtifactError(f"{origin}: is empty, not a neuralc artifact")
    if not data.startswith(b"PK\x03\x04"):
        raise ArtifactError(f"{origin}: is not a neuralc artifact (not a zip file)")
    try:
        z = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError) as e:
        raise ArtifactError(f"{origin}: is truncated or damaged (its zip directory cannot be "
                            f"read: {e})") from None
    with z:
        names = z.namelist()
        if MANIFEST not in names:
            raise ArtifactError(f"{origin}: has no {MANIFEST}; it is not a neuralc artifact")
        manifest = _parse_manifest(_read_member(z, MANIFEST, origin), origin)
        _check_versions(manifest, origin)
        listed = listed_members(manifest)
        for name in listed:
            problem = check_member_name(name)
            if problem:
                raise ArtifactError(f"{origin}: {MANIFEST} names an {problem}")
        extra = sorted(set(names) - set(listed) - {MANIFEST})
        if extra:
            raise ArtifactError(f"{origin}: holds member '{extra[0]}', which {MANIFEST} does "
                                "not list (the file was changed after it was written)")
        members: dict[str, bytes] = {}
        for name, digest in listed.items():
            if name not in names:
                raise ArtifactError(f"{origin}: lacks member '{name}', which {MANIFEST} lists "
                                    "(the file is incomplete)")
            blob = _read_member(z, name, origin)
            if sha256(blob) != digest:
                raise ArtifactError(f"{origin}: member '{name}' does not match its SHA-256 in "
                                    f"{MANIFEST} (the file was modified after it was written)")
            members[name] = blob
    return ArtifactData(manifest, members, origin)


def _read_member(z: zipfile.ZipFile, name: str, origin: str) -> bytes:
    try:
        return z.read(name)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as e:
        raise ArtifactError(f"{origin}: member '{name}' is damaged ({e})") from None


def _parse_manifest(raw: bytes, origin: str) -> dict[str, Any]:
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ArtifactError(f"{origin}: {MANIFEST} is not valid JSON ({e})") from None
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{origin}: {MANIFEST} is not a JSON object")
    if manifest.get("format") != FORMAT:
        raise ArtifactError(f"{origin}: is not a neuralc artifact ({MANIFEST} names format "
                            f"{manifest.get('format')!r}, expected {FORMAT!r})")
    shapes: dict[str, type] = {"format_version": int, "neuralc_version": str, "model": dict,
                               "members": dict, "variants": list}
    for key, kind in shapes.items():
        if not isinstance(manifest.get(key), kind):
            raise ArtifactError(f"{origin}: {MANIFEST} is malformed: '{key}' is missing or "
                                f"not a {kind.__name__}")
    for i, v in enumerate(manifest["variants"]):
        ok = (isinstance(v, dict) and isinstance(v.get("name"), str)
              and isinstance(v.get("kind"), str) and isinstance(v.get("files"), dict)
              and isinstance(v.get("requires", {}), dict))
        if not ok:
            raise ArtifactError(f"{origin}: {MANIFEST} is malformed: variant {i} lacks a "
                                "name, kind or files")
    digests = [*manifest["members"].values(),
               *(d for v in manifest["variants"] for d in v["files"].values())]
    if not all(isinstance(d, str) and re.fullmatch(r"[0-9a-f]{64}", d) for d in digests):
        raise ArtifactError(f"{origin}: {MANIFEST} is malformed: a digest is not a SHA-256")
    return manifest


def _check_versions(manifest: Mapping[str, Any], origin: str) -> None:
    version = manifest["format_version"]
    if version != FORMAT_VERSION:
        newer = "a newer" if version > FORMAT_VERSION else "an older"
        raise ArtifactError(f"{origin}: has artifact format version {version} ({newer} "
                            f"neuralc wrote it); this neuralc {neuralc_version()} reads version "
                            f"{FORMAT_VERSION} only: recompile the model from its .nr file")
    problem = version_problem(manifest["neuralc_version"], neuralc_version())
    if problem:
        raise ArtifactError(f"{origin}: {problem}")


__all__ = ["FORMAT", "FORMAT_VERSION", "GRAPH", "MANIFEST", "SUFFIX", "WEIGHTS", "ArtifactData",
           "ArtifactError", "check_member_name", "listed_members", "pack", "read_artifact",
           "read_artifact_bytes", "sha256", "version_problem"]
