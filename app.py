#!/usr/bin/env python3
"""CDK entry point: load and validate the stage's config, build the four stacks, run cdk-nag.

    cdk synth -c stage=prod -c target_column=price
    python app.py            # also works without the CDK CLI (reads cdk.json itself)
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aws_cdk import App, Environment, Tags, Validations
from cdk_nag import AwsSolutionsChecks

from stacks.config import CONFIG_KEYS, ConfigError, StageConfig, load_config
from stacks.monitoring import MonitoringStack
from stacks.pipeline import PipelineStack
from stacks.serving import ServingStack
from stacks.storage import StorageStack

ROOT = Path(__file__).resolve().parent


def cdk_json_context() -> dict[str, Any]:
    return json.loads((ROOT / "cdk.json").read_text())["context"]


def build_app(context: Mapping[str, Any] | None = None, outdir: str | None = None) -> tuple[App, StageConfig]:
    """Build (not synthesize) the app. ``context`` adds to cdk.json's context like ``-c`` does."""
    app = App(outdir=outdir, context=dict(context or {}))
    # Under the CDK CLI cdk.json's context is already there; `python app.py` must read it itself.
    for key, value in cdk_json_context().items():
        if app.node.try_get_context(key) is None:
            app.node.set_context(key, value)
    context_values = {key: app.node.try_get_context(key) for key in
                      ("stage", "stages", "stage_defaults", *CONFIG_KEYS)}
    config = load_config({k: v for k, v in context_values.items() if v is not None})

    env = Environment(account=config.account or None, region=config.region or None)
    stack_name = f"{config.project}-{config.stage}".title().replace("-", "")
    storage = StorageStack(app, f"{stack_name}Storage", config=config, env=env,
                           description=f"{config.prefix}: KMS key, data/artifacts buckets, ledger"
                           f"{', MLflow' if config.mlflow_tracking else ''} (stateful)")
    pipeline = PipelineStack(app, f"{stack_name}Pipeline", config=config, key=storage.key,
                             mlflow_app_arn=storage.tracking.app_arn if storage.tracking else None, env=env,
                             description=f"{config.prefix}: image, SageMaker roles, control-plane Lambdas, events")
    pipeline.add_stack_dependency(storage, "bucket and table names are referenced by name")
    serving = ServingStack(app, f"{stack_name}Serving", props=pipeline.control_plane,
                           capabilities=pipeline.capabilities, env=env,
                           description=f"{config.prefix}: endpoint (via the deployer) and API Gateway")
    MonitoringStack(app, f"{stack_name}Monitoring", props=pipeline.control_plane,
                    capabilities=pipeline.capabilities, topic=pipeline.topic, dead_letters=pipeline.dead_letters,
                    functions=[pipeline.trigger, pipeline.processing_done, pipeline.training_done,
                               pipeline.endpoint_state, pipeline.monitor_schedule, serving.provisioner.handler],
                    api_name=serving.api.api.rest_api_name, env=env,
                    description=f"{config.prefix}: alarms, drift -> retrain, dashboard")
    for key, value in (("project", config.project), ("stage", config.stage)):
        Tags.of(app).add(key, value)
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return app, config


def main() -> int:
    # Under the CDK CLI, CDK_OUTDIR is set; `python app.py` alone writes to cdk.out like `cdk synth`, with
    # the construct-path metadata the CLI would enable.
    outdir = None
    if not os.environ.get("CDK_OUTDIR"):
        (ROOT / "cdk.out").mkdir(exist_ok=True)
        outdir = str(ROOT / "cdk.out")
    try:
        app, _ = build_app(context={"aws:cdk:enable-path-metadata": True}, outdir=outdir)
    except ConfigError as err:
        print(f"cdk.json / -c: {err}", file=sys.stderr)
        return 1
    app.synth()
    return 0


if __name__ == "__main__":
    sys.exit(main())
