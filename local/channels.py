"""A job's data in and out of S3, laid out as SageMaker lays it out under ``/opt/ml``.

Inputs: an ``S3Prefix`` (every object under it, paths kept relative to the prefix's "directory"; an exact key
lands as its basename) or a ``ManifestFile`` (the listed objects, each at its key relative to the manifest's
prefix). Outputs: a directory uploaded under a prefix (Processing ``S3Output``), or the model directory as
``model.tar.gz`` plus ``output/data`` as ``output.tar.gz`` (Training).
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import Any


def split_s3(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri}")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


def local_path(root: Path, container_path: str) -> Path:
    """Map an in-container ``/opt/ml/...`` path onto the job's OPT_ML_ROOT."""
    path = container_path.rstrip("/")
    if path.startswith("/opt/ml"):
        path = path[len("/opt/ml"):]
    return root / path.lstrip("/")


def _kms(kms_key: str | None) -> dict[str, str] | None:
    return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms_key} if kms_key else None


def download(s3: Any, uri: str, data_type: str, dest: Path) -> list[str]:
    """Download a channel to ``dest``; the S3 keys read."""
    bucket, prefix = split_s3(uri)
    dest.mkdir(parents=True, exist_ok=True)
    if data_type == "ManifestFile":
        return download_manifest(s3, bucket, prefix, dest)
    if not prefix or prefix.endswith("/"):
        base = prefix
    elif "/" in prefix:
        base = prefix.rsplit("/", 1)[0] + "/"
    else:
        base = ""
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            key = obj["Key"]
            if key.endswith("/"):
                continue
            target = dest / key[len(base):]
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, key, str(target))
            keys.append(key)
    if not keys:
        raise FileNotFoundError(f"no S3 objects found under {uri}")
    return keys


def download_manifest(s3: Any, bucket: str, key: str, dest: Path) -> list[str]:
    """SageMaker's ManifestFile: `[{"prefix": "s3://b/p/"}, "rel/key", ...]`; each object lands at its key
    relative to the prefix (its latest version, as SageMaker reads it)."""
    manifest = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    if not isinstance(manifest, list) or not manifest or not isinstance(manifest[0], dict) or "prefix" not in manifest[0]:
        raise ValueError(f"s3://{bucket}/{key} is not a manifest: its first entry must be {{\"prefix\": ...}}")
    source_bucket, prefix = split_s3(manifest[0]["prefix"])
    keys = []
    for relative in manifest[1:]:
        target = dest / str(relative)
        target.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(source_bucket, f"{prefix}{relative}", str(target))
        keys.append(f"{prefix}{relative}")
    if not keys:
        raise FileNotFoundError(f"the manifest s3://{bucket}/{key} lists no objects")
    return keys


def upload_dir(s3: Any, source: Path, uri: str, kms_key: str | None) -> int:
    """Every file under ``source`` to ``uri`` (relative paths kept); the number uploaded."""
    bucket, prefix = split_s3(uri)
    count = 0
    for path in sorted(source.rglob("*")):
        if path.is_file():
            relative = path.relative_to(source).as_posix()
            key = f"{prefix.rstrip('/')}/{relative}" if prefix else relative
            s3.upload_file(str(path), bucket, key, ExtraArgs=_kms(kms_key))
            count += 1
    return count


def tar_directory(directory: Path, archive: Path) -> Path:
    """``archive`` (.tar.gz) of the entries of ``directory`` at its top level, as SageMaker packs ``/opt/ml/model``."""
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(directory.iterdir()):
            tar.add(path, arcname=path.name)
    return archive


def upload_model(s3: Any, root: Path, prefix_uri: str, kms_key: str | None) -> None:
    """``/opt/ml/model`` as ``<prefix>/model.tar.gz``; ``/opt/ml/output/data`` (if any) as ``output.tar.gz``."""
    bucket, prefix = split_s3(prefix_uri)
    s3.upload_file(str(tar_directory(root / "model", root / "model.tar.gz")), bucket, f"{prefix}/model.tar.gz",
                   ExtraArgs=_kms(kms_key))
    data = root / "output" / "data"
    if any(data.iterdir()):
        s3.upload_file(str(tar_directory(data, root / "output.tar.gz")), bucket, f"{prefix}/output.tar.gz",
                       ExtraArgs=_kms(kms_key))
