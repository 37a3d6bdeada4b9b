"""Server-side copies of an S3 object of any size S3 stores: one CopyObject up to its 5 GiB limit, above it a
multipart copy (CreateMultipartUpload, UploadPartCopy per byte range, CompleteMultipartUpload) that carries what
CopyObject would have carried: the content type, the user metadata (the source's, or the ones given) and the tags.
A multipart copy that fails part way is aborted (no parts left to pay for) and the error raised, so the caller's
retry starts it again; the target is written only by the completing call, so nobody sees half a copy."""

from __future__ import annotations

import math
from typing import Any
from urllib.parse import quote

from . import clients

COPY_OBJECT_LIMIT = 5 * 1024 ** 3  # CopyObject's largest source
MIN_PART_BYTES = 5 * 1024 ** 2  # S3's smallest part (but the last)
PART_BYTES = 512 * 1024 ** 2  # one UploadPartCopy: large enough that 5 TiB fits S3's 10,000 parts
MAX_PARTS = 10_000


def part_ranges(size: int, part_bytes: int = PART_BYTES) -> list[tuple[int, int]]:
    """Inclusive byte ranges covering `size` bytes in at most MAX_PARTS parts of at least `part_bytes` (but the
    last)."""
    if size <= 0:
        raise ValueError("a multipart copy needs a non-empty source")
    step = max(part_bytes, MIN_PART_BYTES, math.ceil(size / MAX_PARTS))
    return [(start, min(start + step, size) - 1) for start in range(0, size, step)]


def copy(source: dict[str, str], bucket: str, key: str, *, size: int, content_type: str | None = None,
         metadata: dict[str, str] | None = None) -> None:
    """Copy `source` ({"Bucket", "Key"[, "VersionId"]}, `size` bytes) to bucket/key. `metadata` None keeps the
    source's user metadata and content type (CopyObject's COPY); a dict replaces them (REPLACE) with it and
    `content_type`."""
    s3 = clients.get("s3")
    replace = metadata is not None
    if size <= COPY_OBJECT_LIMIT:
        extra: dict[str, Any] = ({"MetadataDirective": "REPLACE", "Metadata": metadata,
                                  "ContentType": content_type or "binary/octet-stream"}
                                 if replace else {"MetadataDirective": "COPY"})
        s3.copy_object(Bucket=bucket, Key=key, CopySource=source, **extra)
        return
    _multipart(s3, source, bucket, key, size, content_type, metadata)


def _multipart(s3: Any, source: dict[str, str], bucket: str, key: str, size: int, content_type: str | None,
               metadata: dict[str, str] | None) -> None:
    version = {"VersionId": source["VersionId"]} if source.get("VersionId") else {}
    if metadata is None:
        head = s3.head_object(Bucket=source["Bucket"], Key=source["Key"], **version)
        metadata, content_type = head.get("Metadata") or {}, head.get("ContentType")
    tags = s3.get_object_tagging(Bucket=source["Bucket"], Key=source["Key"], **version).get("TagSet") or []
    extra: dict[str, Any] = {"Metadata": metadata, "ContentType": content_type or "binary/octet-stream"}
    if tags:
        extra["Tagging"] = "&".join(f"{quote(t['Key'], safe='')}={quote(t['Value'], safe='')}" for t in tags)
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key, **extra)["UploadId"]
    try:
        parts = []
        for number, (first, last) in enumerate(part_ranges(size, PART_BYTES), start=1):
            copied = s3.upload_part_copy(Bucket=bucket, Key=key, UploadId=upload, PartNumber=number,
                                         CopySource=source, CopySourceRange=f"bytes={first}-{last}")
            parts.append({"PartNumber": number, "ETag": copied["CopyPartResult"]["ETag"]})
        s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts})
    except BaseException:
        try:
            s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload)
        except Exception:  # noqa: BLE001 - the copy's own error is the one to raise; the lifecycle rule aborts later
            pass
        raise
