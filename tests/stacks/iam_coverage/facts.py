"""What the analysis is told about data it cannot follow: AWS answers, ledger items, events."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from .policies import ACCOUNT, REGION, WILD
from .source import Function, Module


# -- facts: what data the analysis cannot follow holds -----------------------------------------------------------
# A key read from data the analysis cannot follow (an AWS answer, a ledger item) -> an expression over the Lambda
# code that makes what the key holds, and why. The expressions are evaluated like the code (in a module that
# imports it, FACTS_MODULE; `settings` from the function's environment, ANYTHING: a value nobody can tell).
# Keys of events come from the rules in the templates instead (App.event_facts).
FACTS_MODULE = '''\
from mlops_control import jobs, keys
from mlops_control.settings import load

settings = load()
TRAINING_JOB = jobs.job_name(settings, "train")
'''
_MODEL = "jobs.model_tarball(settings, TRAINING_JOB)"
_JOB = "TRAINING_JOB"
_CONFIG = "jobs.config_name(settings, TRAINING_JOB)"
_MODEL_NAME = "jobs.model_name(settings, TRAINING_JOB)"
_PACKAGE = 'f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:model-package/{settings.model_package_group}/{ANYTHING}"'
FACTS: dict[str, tuple[str, str]] = {
    "S3ModelArtifacts": (_MODEL, "DescribeTrainingJob: the model is <S3OutputPath>/<job>/output/model.tar.gz, the "
                                 "output path jobs.training_request sets"),
    "ModelDataUrl": (_MODEL, "a model package's container: the S3ModelArtifacts deployer.register_package gave it"),
    "model_data_url": (_MODEL, "the production record (ledger) keeps the deployed training job's S3ModelArtifacts"),
    "inflight_model_data_url": (_MODEL, "the deployment slot (ledger) keeps the training job's S3ModelArtifacts"),
    "TrainingJobName": (_JOB, "training jobs are named by jobs.job_name(settings, 'train', ...)"),
    "training_job": (_JOB, "ledger records and package metadata keep a training job's name"),
    "inflight_job": (_JOB, "the deployment slot keeps the training job's name"),
    "pending_job": (_JOB, "the deployment slot keeps the waiting training job's name"),
    "running_job": (_JOB, "the training slot keeps the running job's name"),
    "EndpointConfigName": (_CONFIG, "configs are named by jobs.config_name (DescribeEndpoint, and the lists "
                                    "deployer._names filters by that prefix)"),
    "config_name": (_CONFIG, "the production record keeps a jobs.config_name"),
    "inflight_config": (_CONFIG, "the deployment slot keeps a jobs.config_name"),
    "previous_config": (_CONFIG, "the deployment slot keeps the config the endpoint ran, a jobs.config_name"),
    "ModelName": (_MODEL_NAME, "models are named by jobs.model_name (DescribeEndpointConfig, and the lists "
                               "deployer._names filters by that prefix)"),
    "inflight_model": (_MODEL_NAME, "the deployment slot keeps a jobs.model_name"),
    "ModelPackageArn": (_PACKAGE, "CreateModelPackage/ListModelPackages answer versions of the one group the "
                                  "deployer registers in: model-package/<group>/<version>"),
    "inflight_package": (_PACKAGE, "the deployment slot keeps the ARN CreateModelPackage answered"),
    "TRACK_PACKAGE_ARN": (_PACKAGE, "DescribeProcessingJob of a track job: its environment carries the package "
                                    "ARN the deployer passed (jobs.tracking_request, from the deployment slot)"),
    "S3Uri": ('f"s3://{settings.data_bucket}/{settings.incoming_prefix}{ANYTHING}"',
              "DescribeProcessingJob (intake._source_of): a validation job's data input is the trigger's copy of an "
              "upload under incoming/, which jobs.uploaded_key_of maps back to that upload, or (jobs started "
              "before inputs were staged) the upload itself: either way the object read is s3://DATA/incoming/*"),
}


FACTS_MODULE_NAME = "mlops_control._iam_coverage_facts"


# The ledger's read (Ledger.get(pk, sk)): its answer is an item of ITEM_FACTS (or None). Items of the ledger the
# code reads back: (pk, sk, attribute -> expression, why), in the expressions' terms above.
STORE_READ = "mlops_control.ledger.Ledger.get"
ITEM_FACTS: list[tuple[str, dict[str, str], str]] = [
    ('keys.job_meta(jobs.job_name(settings, "val"))',
     {"bucket": "settings.data_bucket", "key": 'f"{settings.incoming_prefix}{ANYTHING}"'},
     "intake._stage records the upload a validation job reads: the data bucket's (handle_upload ignores other "
     "buckets), under incoming/ (uploads under ground-truth/ start ground-truth jobs instead)"),
    ('keys.job_meta(jobs.job_name(settings, "gt"))',
     {"bucket": "settings.data_bucket", "key": 'f"{settings.ground_truth_prefix}{ANYTHING}"'},
     "intake._stage records the labels file a ground-truth job reads: under ground-truth/ in the data bucket"),
]


def facts_module_source() -> str:
    def function(name: str, expression: str) -> str:
        return f"\n\ndef {name}():\n    return {expression}\n"

    functions = "".join(function(fact_function(key), expression) for key, (expression, _) in FACTS.items())
    for index, (key, attributes, _) in enumerate(ITEM_FACTS):
        functions += function(f"item{index}_pk_sk", key) + "".join(
            function(f"item{index}_{attr}", expression) for attr, expression in attributes.items())
    return FACTS_MODULE + f'REGION, ACCOUNT = "{REGION}", "{ACCOUNT}"\n' + functions


def fact_function(key: str) -> str:
    return f"fact_{key}"


def item_facts(module: Module) -> list[tuple[Function, dict[str, Function]]]:
    """(the function making the item's (pk, sk), attribute -> the function making its value), per ITEM_FACTS row."""
    return [(module.functions[f"item{i}_pk_sk"], {attr: module.functions[f"item{i}_{attr}"] for attr in attributes})
            for i, (_, attributes, _) in enumerate(ITEM_FACTS)]


def event_patterns(pattern: Any) -> dict[str, set[str]]:
    """Fields of an EventBridge pattern -> the values (prefix*) it lets through, by the event field's last name."""
    out: dict[str, set[str]] = defaultdict(set)

    def walk(node: Any, name: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "$or":
                    for branch in v:
                        walk(branch, name)
                else:
                    walk(v, k)
        elif isinstance(node, list):
            for v in node:
                if isinstance(v, str):
                    out[name].add(v)
                elif isinstance(v, dict) and "prefix" in v:
                    out[name].add(v["prefix"] + WILD)
                elif isinstance(v, dict):
                    walk(v, name)

    walk(pattern, "")
    return out


# Keys the code reads from its events -> the fields of its rules' patterns that say what they hold. An event matches
# one alternative of a pattern (a prefix), so the analysis runs once per combination of alternatives: an upload
# under incoming/ never takes the ground-truth path, a validation job's completion never the monitor's.
EVENT_FACTS = {"name": "name@bucket", "key": "key@object", "ProcessingJobName": "ProcessingJobName",
               "TrainingJobName": "TrainingJobName", "EndpointName": "EndpointName"}


# Roles the analysis does not model, by construct path, and why that is acceptable.
UNANALYSED_ROLES = {
    "*/Custom::S3AutoDeleteObjectsCustomResourceProvider/Role": (
        "CDK's auto-delete-objects handler (dev only, retain_data=false): CDK's own code, granted by CDK in the "
        "buckets' policies; prod has none"),
    "*/Api/Api/CloudWatchRole/Resource": (
        "API Gateway's account-wide logging role: AWS's managed policy AmazonAPIGatewayPushToCloudWatchLogs, "
        "used by API Gateway, not by this stack's code"),
}
