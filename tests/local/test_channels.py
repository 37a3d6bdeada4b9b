"""A job's data in and out of S3 as SageMaker lays it out (local.channels)."""

import io
import json
import tarfile

from local.channels import download, local_path, split_s3, upload_dir, upload_model


def files(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_prefix_channels_keep_paths_relative_to_the_prefixs_directory(moto, tmp_path):
    s3 = moto.client("s3")
    s3.create_bucket(Bucket="chan")
    for key in ("validated/a.csv", "validated/sub/b.csv", "validated2/c.csv", "incoming/x y.csv"):
        s3.put_object(Bucket="chan", Key=key, Body=key.encode())
    assert download(s3, "s3://chan/validated/", "S3Prefix", tmp_path / "t") == ["validated/a.csv", "validated/sub/b.csv"]
    assert files(tmp_path / "t") == ["a.csv", "sub/b.csv"]
    download(s3, "s3://chan/incoming/x y.csv", "S3Prefix", tmp_path / "one")  # an exact key lands as its basename
    assert files(tmp_path / "one") == ["x y.csv"]


def test_a_manifest_channel_downloads_exactly_the_listed_objects(moto, tmp_path):
    s3 = moto.client("s3")
    s3.create_bucket(Bucket="man")
    for key in ("validated/a.csv", "validated/sub/b.csv", "validated/left-out.csv"):
        s3.put_object(Bucket="man", Key=key, Body=key.encode())
    s3.put_object(Bucket="man", Key="models/j/manifest.json",
                  Body=json.dumps([{"prefix": "s3://man/validated/"}, "a.csv", "sub/b.csv"]).encode())
    keys = download(s3, "s3://man/models/j/manifest.json", "ManifestFile", tmp_path / "train")
    assert keys == ["validated/a.csv", "validated/sub/b.csv"]
    assert files(tmp_path / "train") == ["a.csv", "sub/b.csv"]
    assert (tmp_path / "train" / "sub" / "b.csv").read_bytes() == b"validated/sub/b.csv"


def test_outputs_upload_as_a_directory_or_as_the_model_tarball(moto, tmp_path):
    s3 = moto.client("s3")
    s3.create_bucket(Bucket="out")
    report = tmp_path / "report"
    (report / "html").mkdir(parents=True)
    (report / "report.json").write_text("{}")
    (report / "html" / "index.html").write_text("<p>")
    assert upload_dir(s3, report, "s3://out/reports/v-1/", None) == 2
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="out", Prefix="reports/")["Contents"])
    assert keys == ["reports/v-1/html/index.html", "reports/v-1/report.json"]
    root = tmp_path / "opt_ml"
    (root / "model").mkdir(parents=True)
    (root / "output" / "data").mkdir(parents=True)
    (root / "model" / "model.joblib").write_bytes(b"m")
    upload_model(s3, root, "s3://out/models/t/output", None)
    blob = s3.get_object(Bucket="out", Key="models/t/output/model.tar.gz")["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        assert tar.getnames() == ["model.joblib"]
    assert "Contents" not in s3.list_objects_v2(Bucket="out", Prefix="models/t/output/output.tar.gz")


def test_paths():
    assert split_s3("s3://b/k/x") == ("b", "k/x")
    assert local_path(__import__("pathlib").Path("/r"), "/opt/ml/processing/input/data/").as_posix() == \
        "/r/processing/input/data"
