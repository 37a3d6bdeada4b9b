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

