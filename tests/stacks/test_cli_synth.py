"""`cdk synth` with the pinned CLI succeeds with no AWS credentials and no Docker engine."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CDK = ROOT / "node_modules" / ".bin" / "cdk"
PINNED = json.loads((ROOT / "package.json").read_text())["devDependencies"]["aws-cdk"]


@pytest.fixture
def offline_env(tmp_path):
    """No credentials of any kind, and a `docker` that records being called and fails."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    marker = tmp_path / "docker-was-called"
    docker = fake_bin / "docker"
    docker.write_text(f"#!/bin/sh\necho \"$@\" >> {marker}\nexit 1\n")
    docker.chmod(docker.stat().st_mode | stat.S_IEXEC)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_ACCESS", "AWS_SECRET", "AWS_SESSION", "AWS_PROFILE", "AWS_DEFAULT_PROFILE",
                                "AWS_WEB_IDENTITY", "AWS_ROLE", "AWS_CONTAINER", "AWS_ENDPOINT", "CDK_DEFAULT",
                                "DOCKER_"))}
    env.update({
        "PATH": f"{fake_bin}{os.pathsep}{env.get('PATH', '')}",
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"),
        "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock",
        "CDK_DISABLE_VERSION_CHECK": "1", "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "1",
        "JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION": "1", "CDK_DISABLE_CLI_TELEMETRY": "true",
    })
    return env, marker


def test_pinned_cli_is_the_one_in_package_json():
    version = subprocess.run([str(CDK), "--version"], capture_output=True, text=True, timeout=120,
                             env={**os.environ, "CDK_DISABLE_VERSION_CHECK": "1"})
    assert version.returncode == 0 and version.stdout.startswith(PINNED)


def test_cdk_synth_works_without_credentials_or_docker(offline_env, tmp_path):
    env, marker = offline_env
    out = tmp_path / "cdk.out"
    result = subprocess.run([str(CDK), "synth", "--quiet", "-c", "stage=prod", "-c", "target_column=price",
                             "--output", str(out)],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    assert not marker.exists(), "synth must not call docker"
    templates = sorted(p.name for p in out.glob("*.template.json"))
    assert templates == sorted(f"MlopsProd{k}.template.json" for k in ("Monitoring", "Pipeline", "Serving", "Storage"))
    pipeline = json.loads((out / "MlopsProdPipeline.template.json").read_text())
    targets = {r["Properties"]["Environment"]["Variables"]["TARGET_COLUMN"]
               for r in pipeline["Resources"].values() if r["Type"] == "AWS::Lambda::Function"}
    assert targets == {"price"}  # -c overrides reach the app through the CLI
    report = json.loads((out / "validation-report.json").read_text())
    assert all(p["conclusion"] == "success" for p in report["pluginReports"])


def test_cdk_synth_reports_invalid_config_by_key(offline_env, tmp_path):
    env, _ = offline_env
    result = subprocess.run([str(CDK), "synth", "--quiet", "-c", "stage=dev", "-c", "api_auth=cognito",
                             "--output", str(tmp_path / "cdk.out")],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode != 0
    assert "api_auth" in result.stderr and "'iam' or 'api_key'" in result.stderr
