"""Synthesis helpers shared by the stack tests (a uniquely named module, importable from any test)."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "1")
os.environ.setdefault("JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION", "1")
os.environ.setdefault("CDK_DISABLE_VERSION_CHECK", "1")

KINDS = ("Storage", "Pipeline", "Serving", "Monitoring")
# Construct paths of the SageMaker execution roles (logical id = this + an 8-digit hash), by kind of work.
SAGEMAKER_ROLE_IDS = {"training": "SageMakerExecutionRole", "processing": "SageMakerProcessingRole",
                      "model": "SageMakerModelRole", "tracking": "SageMakerTrackingRole"}


@dataclass
class Synth:
    """One synthesized app: its config, templates by stack kind, and cdk-nag's validation report."""

    config: Any
    outdir: Path
    stack_names: dict[str, str]
    templates: dict[str, dict]
    metadata: dict[str, dict]
    report: dict

    def template(self, kind: str):
        from aws_cdk.assertions import Template
        return Template.from_json(self.templates[kind])

    def resources(self, kind: str, type_: str) -> dict[str, dict]:
        return {k: v for k, v in self.templates[kind]["Resources"].items() if v["Type"] == type_}

    def all_resources(self, type_: str) -> dict[str, tuple[str, dict]]:
        return {k: (kind, v) for kind in KINDS for k, v in self.resources(kind, type_).items()}

    def invoked_function(self, kind: str, reference: dict) -> str:
        """The logical id of the function an event source's ARN reference invokes, asserting that it goes
        through the function's ``live`` alias, and that the alias points at a version of that same function."""
        resources = self.templates[kind]["Resources"]
        (alias_id,) = reference.values() if "Ref" in reference else (None,)
        assert alias_id is not None and resources[alias_id]["Type"] == "AWS::Lambda::Alias", \
            f"{reference} is not a Ref to a Lambda alias"
        alias = resources[alias_id]["Properties"]
        assert alias["Name"] == "live"
        version_id = alias["FunctionVersion"]["Fn::GetAtt"][0]
        version = resources[version_id]
        assert version["Type"] == "AWS::Lambda::Version"
        assert version["Properties"]["FunctionName"] == alias["FunctionName"]
        return alias["FunctionName"]["Ref"]


def synthesize(outdir: Path, context: dict[str, Any]) -> Synth:
    import app as cdk_app

    # As under the CDK CLI: each resource records its construct path (the IAM walker maps policies to it).
    context = {"aws:cdk:enable-path-metadata": True, **context}
    application, config = cdk_app.build_app(context=context, outdir=str(outdir))
    application.synth()  # raises if cdk-nag reports an unacknowledged finding
    prefix = f"{config.project}-{config.stage}".title().replace("-", "")
    names = {kind: f"{prefix}{kind}" for kind in KINDS}
    templates = {k: json.loads((outdir / f"{n}.template.json").read_text()) for k, n in names.items()}
    metadata = {k: json.loads((outdir / f"{n}.metadata.json").read_text()) for k, n in names.items()}
    report = json.loads((outdir / "validation-report.json").read_text())
    return Synth(config=config, outdir=outdir, stack_names=names, templates=templates, metadata=metadata,
                 report=report)




def sagemaker_roles(synth: Synth) -> dict[str, str]:
    """Kind (training/processing/model, and tracking with mlflow_tracking) -> logical id of each role SageMaker may
    assume in the pipeline stack; exactly those."""
    import re

    kinds = [k for k in SAGEMAKER_ROLE_IDS if k != "tracking" or synth.config.mlflow_tracking]
    roles = [k for k, r in synth.resources("Pipeline", "AWS::IAM::Role").items()
             if r["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"].get("Service")
             == "sagemaker.amazonaws.com"]
    found = {kind: [r for r in roles if re.fullmatch(SAGEMAKER_ROLE_IDS[kind] + "[0-9A-F]{8}", r)] for kind in kinds}
    assert len(roles) == len(kinds) and all(len(ids) == 1 for ids in found.values()), roles
    return {kind: ids[0] for kind, ids in found.items()}
