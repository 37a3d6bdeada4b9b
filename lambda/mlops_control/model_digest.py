"""The digest that pins a model: computed here from `model.tar.gz` when the gate passes, checked by `serve` on the
directory SageMaker extracted it to (`MODEL_SHA256`), before anything in it is unpickled.

Digest of a model directory (CONTRACTS.md, "Serving"; the image has its own copy, a contract test compares them):
sha256 (hex) of one line per regular file, sorted by the relative POSIX path's UTF-8 bytes,
`<sha256 hex of the file>  <relative path>\\n`. A link, any other non-regular entry, or a name with a line break
makes the model invalid.
"""
from __future__ import annotations

import hashlib
import json
import posixpath
import tarfile
from dataclasses import dataclass
from typing import IO, Any

_CHUNK = 1 << 20


class InvalidModel(ValueError):
    """The artifact is not a plain tree of regular files (a link, a device, a path leaving the directory)."""


@dataclass(frozen=True)
class Pinned:
    digest: str  # MODEL_SHA256: what `serve` checks on the extracted directory
    tarball_sha256: str  # the S3 object itself, for the record
    version_id: str | None  # the S3 version of the tarball that was read
    files: int
    metadata: dict | None = None  # metadata.json of the model, read on the way (the gate's paired metrics)


METADATA_FILE = "metadata.json"
_METADATA_LIMIT = 16 * 1024 * 1024


def manifest_digest(file_hashes: dict[str, str]) -> str:
    lines = "".join(f"{file_hashes[path]}  {path}\n" for path in sorted(file_hashes, key=lambda p: p.encode("utf-8")))
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()


class _HashingReader:
    """Hashes every byte tarfile reads from the (streamed) object, so the tarball's own sha256 costs no second read."""

    def __init__(self, raw: IO[bytes]):
        self._raw = raw
        self.sha256 = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self.sha256.update(data)
        return data

    def drain(self) -> None:
        while self.read(_CHUNK):
            pass


def _member_path(name: str) -> str:
    path = posixpath.normpath(name)  # also drops the "./" SageMaker's tarballs may start names with
    if name.startswith("/") or path == ".." or path.startswith("../"):
        raise InvalidModel(f"tar member {name!r} lies outside the model directory")
    if "\n" in path or "\r" in path:  # a line break could forge a manifest line
        raise InvalidModel(f"tar member {name!r} has a line break in its name")
    return path


def digest_tarball(stream: IO[bytes], keep: str | None = None) -> tuple[str, str, int, bytes | None]:
    """(model digest, sha256 of the tarball, number of files, the bytes of member `keep`) of a gzip'd tar, read
    once as a stream."""
    reader = _HashingReader(stream)
    hashes: dict[str, str] = {}
    kept: bytes | None = None
    with tarfile.open(fileobj=reader, mode="r|gz") as archive:  # type: ignore[call-overload]
        for member in archive:
            path = _member_path(member.name)
            if member.isdir():
                continue
            if not member.isfile():
                raise InvalidModel(f"tar member {member.name!r} is not a regular file ({member.type!r})")
            content = archive.extractfile(member)
            sha, chunks = hashlib.sha256(), []
            keeping = path == keep and member.size <= _METADATA_LIMIT
            while chunk := content.read(_CHUNK):  # type: ignore[union-attr]
                sha.update(chunk)
                if keeping:
                    chunks.append(chunk)
            hashes[path] = sha.hexdigest()  # a later member of the same name wins, as extraction would
            if keeping:
                kept = b"".join(chunks)
    reader.drain()
    return manifest_digest(hashes), reader.sha256.hexdigest(), len(hashes), kept


def pin(s3: Any, model_data_url: str) -> Pinned:
    """Read the model artifact that passed the gate and pin it: its S3 version and digests."""
    if not model_data_url.startswith("s3://"):
        raise InvalidModel(f"model data {model_data_url!r} is not an s3:// URI")
    bucket, _, key = model_data_url[len("s3://"):].partition("/")
    response = s3.get_object(Bucket=bucket, Key=key)
    try:
        digest, tarball_sha256, files, metadata = digest_tarball(response["Body"], keep=METADATA_FILE)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise InvalidModel(f"{model_data_url} is not a readable gzip'd tar: {exc}") from exc
    finally:
        response["Body"].close()
    try:
        parsed = json.loads(metadata) if metadata is not None else None
    except ValueError:
        parsed = None  # the gate then says the paired comparison is missing
    return Pinned(digest=digest, tarball_sha256=tarball_sha256, version_id=response.get("VersionId"), files=files,
                  metadata=parsed if isinstance(parsed, dict) else None)
