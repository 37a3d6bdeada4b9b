"""Facts two deployables must agree on, checked where each keeps its own copy (a Lambda cannot import the image's
code, nor the image the stack's): the metric names the image reports, the Lambda reads and the config accepts.
(The model pin, MODEL_SHA256, is compared in mlops_control/test_model_digest.py.)"""
from __future__ import annotations


def test_the_image_the_lambda_and_the_config_name_the_same_metrics_per_task():
    from ml_pipeline import metrics
    from mlops_control import settings
    from stacks import config

    assert settings.CLASSIFICATION_METRICS == metrics.CLASSIFICATION_METRICS
    assert settings.REGRESSION_METRICS == metrics.REGRESSION_METRICS
    assert set(config.CLASSIFICATION_METRICS) == set(settings.CLASSIFICATION_METRICS)
    assert set(config.REGRESSION_METRICS) == set(settings.REGRESSION_METRICS)
    assert settings.LOWER_IS_BETTER < set(settings.REGRESSION_METRICS)


def test_the_image_prints_a_line_for_every_metric_the_training_job_defines():
    """SageMaker reads FinalMetricDataList with the job's MetricDefinitions regexes over the container's log."""
    from ml_pipeline.entrypoints import METRIC_ORDER
    from mlops_control import settings

    assert set(METRIC_ORDER) == set(settings.KNOWN_METRICS)



def test_the_config_gates_and_sends_what_the_image_computes_and_reads():
    """The fairness gate's metric names (config) are the image's bias metrics, and the responsible_ml keys the config
    validates are the ones the image parses from the hyperparameter."""
    from ml_pipeline import bias
    from stacks import config

    assert config.PRE_TRAINING_BIAS_METRICS == bias.PRE_TRAINING
    assert config.POST_TRAINING_BIAS_METRICS == bias.POST_TRAINING
    assert config.RESPONSIBLE_ML_KEYS == bias.CONFIG_KEYS


def test_the_default_facets_are_accepted_by_the_image():
    """cdk.json's responsible_ml, exactly as the Lambda sends it (one JSON hyperparameter), parses in the image."""
    import json
    from pathlib import Path

    from ml_pipeline import bias
    from stacks.config import load_config

    context = json.loads((Path(__file__).resolve().parents[2] / "cdk.json").read_text())["context"]
    sent = json.dumps(dict(load_config(context).responsible_ml), sort_keys=True)
    parsed = bias.parse_config(sent)
    assert [f["column"] for f in parsed["facets"]] == ["customer_age", "region"]
