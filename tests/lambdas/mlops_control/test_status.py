"""mlops_control.status: `make status` prints the ledger readably."""
from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

from ..helpers import ENV, TABLE


def test_render_prints_decisions_and_state(aws):
    from mlops_control.ledger import Ledger
    from mlops_control.status import render

    ledger = Ledger(TABLE)
    ledger.record("file#s3://b/incoming/a.csv", "quarantined", "age outside 0..120", file="s3://b/incoming/a.csv",
                  job="mlops-test-val-1", at=1_700_000_000)
    ledger.record("endpoint#e", "deployed", "e serves cfg-2", job="mlops-test-train-2",
                  model="arn:aws:sagemaker:us-east-1:1:model-package/mlops-test-models/2", at=1_700_000_100)
    ledger.put_state("pipeline", "training", {"running_job": "mlops-test-train-3", "pending": True, "pending_count": 4})
    out = io.StringIO()
    assert render(ledger, out=out) == 2
    text = out.getvalue()
    assert "2023-11-14 22:13:20  quarantined" in text and "why: age outside 0..120" in text
    assert "model=mlops-test-models/2" in text
    assert "training         : mlops-test-train-3, follow-up pending (4 request(s))" in text
    out = io.StringIO()
    assert render(ledger, file="incoming/a.csv", out=out) == 1


def test_cli_runs_as_a_module_against_an_endpoint_url(env):
    """`PYTHONPATH=lambda python -m mlops_control.status` against a moto server, as `make status` runs it."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        import boto3

        ddb = boto3.client("dynamodb", endpoint_url=f"http://{host}:{port}", region_name="us-east-1")
        ddb.create_table(TableName=TABLE, BillingMode="PAY_PER_REQUEST",
                         AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                               {"AttributeName": "sk", "AttributeType": "S"}],
                         KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}])
        from mlops_control.ledger import Ledger

        Ledger(TABLE, ddb).record("file#s3://b/incoming/x.csv", "validated", "all good", file="s3://b/incoming/x.csv")
        lambda_dir = Path(__file__).resolve().parents[3] / "lambda"
        env = {**os.environ, "PYTHONPATH": str(lambda_dir), "AWS_ENDPOINT_URL": f"http://{host}:{port}",
               "LEDGER_TABLE": TABLE, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1"}
        done = subprocess.run([sys.executable, "-m", "mlops_control.status"], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert "validated" in done.stdout and "s3://b/incoming/x.csv" in done.stdout and "why: all good" in done.stdout
        missing = subprocess.run([sys.executable, "-m", "mlops_control.status", "--table", "nope"], env=env,
                                 capture_output=True, text=True, timeout=60)
        assert missing.returncode == 2 and "cannot read ledger nope" in missing.stderr
    finally:
        server.stop()
    assert ENV["LEDGER_TABLE"] == TABLE
