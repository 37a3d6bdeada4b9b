"""The digest that pins a model directory (MODEL_SHA256). Standard library only: the Lambda asset keeps a copy.

Contract: sha256 (lowercase hex) of the UTF-8 text made of one line per regular file under the directory,
recursively, sorted by the relative POSIX path's UTF-8 bytes, each line `<sha256 hex of the file>  <path>\\n`
(two spaces). A symbolic link or any other non-regular entry under the directory makes it invalid, and so does
a path that is not UTF-8 or has a line break. The directory itself may be reached through a link (e.g. a mount point).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

_CHUNK = 1024 * 1024


class InvalidModelDirectory(ValueError):
    """The directory holds something the digest refuses (a link, a device, a non-UTF-8 name) or is missing."""


def model_digest(directory: Path) -> str:
    root = Path(directory)
    if not root.is_dir():
        raise InvalidModelDirectory(f"{root} is not a directory")
    manifest = hashlib.sha256()
    for relative, path in sorted(_regular_files(root, root)):
        manifest.update(_file_sha256(path).encode("ascii") + b"  " + relative + b"\n")
    return manifest.hexdigest()


def _regular_files(root: Path, directory: Path):
    """(relative path as UTF-8 bytes, path) for every file; raises on anything that is not a directory or a file."""
    with os.scandir(directory) as entries:
        for entry in entries:
            path = Path(entry.path)
            relative = path.relative_to(root).as_posix()
            if entry.is_symlink():
                raise InvalidModelDirectory(f"{relative} is a symbolic link")
            if entry.is_dir(follow_symlinks=False):
                yield from _regular_files(root, path)
            elif entry.is_file(follow_symlinks=False):
                if "\n" in relative or "\r" in relative:  # a line break could forge a manifest line
                    raise InvalidModelDirectory(f"{relative!r} has a line break in its name")
                try:
                    yield relative.encode("utf-8"), path
                except UnicodeEncodeError:
                    raise InvalidModelDirectory(f"{relative!r} is not a UTF-8 name") from None
            else:
                raise InvalidModelDirectory(f"{relative} is not a regular file")


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
