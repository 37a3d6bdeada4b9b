"""mlops_control.copies: server-side copies beyond CopyObject's 5 GiB as multipart copies (UploadPartCopy), here with
the limit and part size scaled down (S3's 5 MiB minimum part) so that moto copies a 12 MiB object in parts."""
from __future__ import annotations

import os

import pytest

from ..helpers import ARTIFACTS, DATA

MIB = 1024 ** 2


@pytest.fixture
def small_limits(monkeypatch):
    from mlops_control import copies

    monkeypatch.setattr(copies, "COPY_OBJECT_LIMIT", 6 * MIB)
    monkeypatch.setattr(copies, "PART_BYTES", 5 * MIB)
    return copies


def _upload(aws, key: str, body: bytes, **extra) -> str:
    return aws.s3.put_object(Bucket=DATA, Key=key, Body=body, **extra)["VersionId"]


def test_part_ranges_cover_every_byte_within_s3s_part_limits():
    from mlops_control.copies import MAX_PARTS, MIN_PART_BYTES, part_ranges

    assert part_ranges(12 * MIB, 5 * MIB) == [(0, 5 * MIB - 1), (5 * MIB, 10 * MIB - 1), (10 * MIB, 12 * MIB - 1)]
    five_tib = 5 * 1024 ** 4
    ranges = part_ranges(five_tib)
    assert len(ranges) <= MAX_PARTS and ranges[0][0] == 0 and ranges[-1][1] == five_tib - 1
    assert all(b[0] == a[1] + 1 for a, b in zip(ranges, ranges[1:]))
    assert all(last - first + 1 >= MIN_PART_BYTES for first, last in ranges[:-1])
    with pytest.raises(ValueError):
        part_ranges(0)


def test_a_large_object_is_copied_in_parts_with_its_version_metadata_type_and_tags(aws, small_limits):
    from mlops_control import clients

    from ..helpers import capture_calls

    body = os.urandom(12 * MIB + 123)
    version = _upload(aws, "incoming/big.csv", body, ContentType="text/csv", Metadata={"accepted-by": "ana"},
                      Tagging="source=export&team=risk%20data")
    _upload(aws, "incoming/big.csv", b"a newer upload")  # the copy must take the announced version
    parts = capture_calls(clients.get("s3"), "UploadPartCopy")  # the client the Lambda code uses
    small_limits.copy({"Bucket": DATA, "Key": "incoming/big.csv", "VersionId": version}, ARTIFACTS,
                      "validation-input/job/incoming/big.csv", size=len(body))
    assert len(parts) == 3 and parts[-1]["CopySourceRange"] == f"bytes={10 * MIB}-{12 * MIB + 122}"
    copied = aws.s3.get_object(Bucket=ARTIFACTS, Key="validation-input/job/incoming/big.csv")
    assert copied["Body"].read() == body
    assert copied["ContentType"] == "text/csv" and copied["Metadata"] == {"accepted-by": "ana"}
    tags = aws.s3.get_object_tagging(Bucket=ARTIFACTS, Key="validation-input/job/incoming/big.csv")["TagSet"]
    assert sorted((t["Key"], t["Value"]) for t in tags) == [("source", "export"), ("team", "risk data")]


def test_replaced_metadata_goes_with_a_multipart_copy_too(aws, small_limits):
    body = os.urandom(7 * MIB)
    version = _upload(aws, "incoming/big.csv", body)
    small_limits.copy({"Bucket": DATA, "Key": "incoming/big.csv", "VersionId": version}, DATA, "validated/big.csv",
                      size=len(body), content_type="text/csv", metadata={"source-version-id": version})
    head = aws.s3.head_object(Bucket=DATA, Key="validated/big.csv")
    assert head["Metadata"] == {"source-version-id": version} and head["ContentLength"] == len(body)


def test_a_part_that_fails_aborts_the_upload_and_leaves_no_object(aws, small_limits):
    from botocore.exceptions import ClientError
    from mlops_control import clients

    body = os.urandom(12 * MIB)
    version = _upload(aws, "incoming/big.csv", body)
    calls = {"n": 0}

    def fail_second_part(params, **_):
        calls["n"] += 1
        if calls["n"] == 2:
            raise ClientError({"Error": {"Code": "SlowDown", "Message": "injected"}}, "UploadPartCopy")

    events = clients.get("s3").meta.events
    events.register("before-call.s3.UploadPartCopy", fail_second_part)
    with pytest.raises(ClientError, match="injected"):
        small_limits.copy({"Bucket": DATA, "Key": "incoming/big.csv", "VersionId": version}, ARTIFACTS, "x/big.csv",
                          size=len(body))
    events.unregister("before-call.s3.UploadPartCopy", fail_second_part)
    assert aws.s3.list_multipart_uploads(Bucket=ARTIFACTS).get("Uploads", []) == []
    assert aws.keys(ARTIFACTS, "x/") == []
    # The retry starts again and completes.
    small_limits.copy({"Bucket": DATA, "Key": "incoming/big.csv", "VersionId": version}, ARTIFACTS, "x/big.csv",
                      size=len(body))
    assert aws.s3.get_object(Bucket=ARTIFACTS, Key="x/big.csv")["Body"].read() == body


def test_an_upload_over_copy_objects_limit_goes_through_the_trigger(aws, small_limits, monkeypatch):
    """The trigger stages a multipart upload larger than CopyObject allows for its validation job, byte for byte."""
    from handlers.trigger import handler
    from mlops_control import settings

    monkeypatch.setenv("MAX_UPLOAD_BYTES", str(64 * MIB))
    settings.reset()

    from ..helpers import eventbridge_object_created

    body = b"age,plan,churn\n" + b"".join(b"%d,a,%s\n" % (i % 90, b"yes" if i % 3 else b"no")
                                          for i in range(1_200_000))
    assert len(body) > 6 * MIB
    upload = aws.s3.create_multipart_upload(Bucket=DATA, Key="incoming/big.csv", ContentType="text/csv")["UploadId"]
    etags = [aws.s3.upload_part(Bucket=DATA, Key="incoming/big.csv", UploadId=upload, PartNumber=n + 1,
                                Body=body[start:start + 5 * MIB])["ETag"]
             for n, start in enumerate(range(0, len(body), 5 * MIB))]
    done = aws.s3.complete_multipart_upload(
        Bucket=DATA, Key="incoming/big.csv", UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": n + 1, "ETag": e} for n, e in enumerate(etags)]})
    head = aws.s3.head_object(Bucket=DATA, Key="incoming/big.csv")
    result = handler(eventbridge_object_created("incoming/big.csv", size=len(body), etag=head["ETag"].strip('"'),
                                                version=done["VersionId"]), None)
    assert result["status"] == "started"
    staged = f"validation-input/{result['job']}/incoming/big.csv"
    assert aws.s3.get_object(Bucket=ARTIFACTS, Key=staged)["Body"].read() == body
