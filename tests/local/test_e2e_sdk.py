"""The SageMaker Python SDK (v3: sagemaker.core) as a client of the embedded stack, unchanged: only the standard
botocore endpoint variables point it at the local AWS API and HTTPS runtime, as a data scientist would."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from test_e2e_retraining import _csv, _rows, serving  # noqa: F401 (a fixture) - tests/local is on sys.path

pytestmark = pytest.mark.e2e

CLIENT = """
import json, sys
import boto3
from sagemaker.core.resources import Endpoint

name, body = sys.argv[1], sys.stdin.buffer.read()
session = boto3.Session()
endpoint = Endpoint.get(name, session=session, region=session.region_name)
answer = endpoint.invoke(body=body, content_type="text/csv", accept="application/json")
print(json.dumps({"status": endpoint.endpoint_status, "config": endpoint.endpoint_config_name,
                  "predictions": json.loads(answer.body.read())["predictions"]}))
"""


def test_the_sdk_describes_and_invokes_the_endpoint(stack, serving, sample, tmp_path):
    target = serving["target"]
    rows = _rows(sample(tmp_path / "rows.csv", 50, seed=77, target=target))
    body = _csv(rows, [c for c in rows[0] if c != target])
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local",
           "AWS_DEFAULT_REGION": stack.region, "AWS_ENDPOINT_URL_SAGEMAKER": stack.aws_url,
           "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": stack.runtime_url, "AWS_CA_BUNDLE": stack.ca}
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
        env.pop(name, None)
    result = subprocess.run([sys.executable, "-c", CLIENT, stack.output("EndpointName")], input=body, env=env,
                            capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    answer = json.loads(result.stdout.decode().strip().splitlines()[-1])
    assert answer["status"] == "InService" and answer["config"] == stack.live_config()
    direct = stack.runtime().invoke_endpoint(EndpointName=stack.output("EndpointName"), ContentType="text/csv",
                                             Accept="application/json", Body=body)
    assert answer["predictions"] == json.loads(direct["Body"].read())["predictions"]
    assert len(answer["predictions"]) == 50
