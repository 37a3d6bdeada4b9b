"""The stage config: loaded from cdk.json context, overridable with -c, invalid values name their key."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stacks.config import CONFIG_KEYS, ConfigError, StageConfig, load_config

ROOT = Path(__file__).resolve().parents[2]
CONTEXT = json.loads((ROOT / "cdk.json").read_text())["context"]


def context(**overrides):
    ctx = copy.deepcopy(CONTEXT)
    ctx.update(overrides)
    return ctx


def test_dev_and_prod_load_with_their_own_values():
    dev = load_config(context(stage="dev"))
    prod = load_config(context(stage="prod"))
    assert (dev.stage, dev.prefix) == ("dev", "mlops-dev")
    assert (prod.stage, prod.prefix) == ("prod", "mlops-prod")
    assert dev.retain_data is False and prod.retain_data is True
    assert prod.serving_min_instances >= 2
    assert prod.training_hyperparameters["tuning_iterations"] != dev.training_hyperparameters["tuning_iterations"]


def test_stage_defaults_to_dev():
    ctx = context()
    del ctx["stage"]
    assert load_config(ctx).stage == "dev"


def test_every_key_is_set_for_every_stage_in_cdk_json():
    for stage in CONTEXT["stages"]:
        config = load_config(context(stage=stage))
        assert set(CONFIG_KEYS) <= set(vars(config))


def test_command_line_strings_override_and_are_converted():
    config = load_config(context(stage="prod", target_column="price", serving_max_instances="9",
                                 drift_threshold="0.35", retain_data="false",
                                 allowed_extensions=".csv", training_hyperparameters='{"seed": "7"}'))
    assert config.target_column == "price"
    assert config.serving_max_instances == 9
    assert config.drift_threshold == pytest.approx(0.35)
    assert config.retain_data is False
    assert config.allowed_extensions == (".csv",)
    assert dict(config.training_hyperparameters) == {"seed": "7"}


def test_mlflow_tracking_is_on_by_default_and_can_be_switched_off():
    assert load_config(context(stage="dev")).mlflow_tracking is True
    assert load_config(context(stage="prod")).mlflow_tracking is True
    assert load_config(context(stage="prod", mlflow_tracking="false")).mlflow_tracking is False
    with pytest.raises(ConfigError) as err:
        load_config(context(stage="dev", mlflow_tracking="sometimes"))
    assert err.value.key == "mlflow_tracking"


def test_a_fairness_gate_needs_facets_and_the_default_measures_the_sample_datas():
    config = load_config(context(stage="dev", fairness_gate='{"DI": [0.8, 1.25]}'))
    assert config.fairness_gate == {"DI": [0.8, 1.25]}
    assert [f["column"] for f in config.responsible_ml["facets"]] == ["customer_age", "region"]
    with pytest.raises(ConfigError) as err:
        load_config(context(stage="dev", responsible_ml="{}", fairness_gate='{"DI": [0.8, 1.25]}'))
    assert err.value.key == "fairness_gate" and "needs facets" in str(err.value)


def test_config_is_frozen_all_the_way_down():
    config = load_config(context())
    with pytest.raises(AttributeError):
        config.target_column = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.training_hyperparameters["seed"] = "1"  # type: ignore[index]


def test_quality_gate_document_matches_the_contract_shape():
    gate = load_config(context()).quality_gate
    assert set(gate) == {"classification", "regression", "tolerance"}
    assert set(gate["classification"]) == {"metric", "threshold"} == set(gate["regression"])


@pytest.mark.parametrize("key, value, words", [
    ("serving_min_instances", "0", "at least 1"),
    ("serving_max_instances", "0", ">= serving_min_instances"),
    ("task", "clustering", "auto, classification, regression"),
    ("project", "My_Project", "lowercase"),
    ("project", "a-very-long-project-name", "longer than"),
    ("processing_instance_type", "m5.large", "instance type"),
    ("gate_classification_metric", "rmse", "roc_auc"),
    ("gate_classification_threshold", "1.5", "between 0 and 1"),
    ("data_capture_percent", "101", "between 0 and 100"),
    ("api_auth", "cognito", "'iam' or 'api_key'"),
    ("monitor_schedule", "every day", "rate(...) or cron(...)"),
    ("metric_namespace", "AWS/SageMaker", "custom CloudWatch namespace"),
    ("log_retention_days", "10", "not a CloudWatch Logs retention"),
    ("lambda_reserved_concurrency", "0", "at least 1"),
    ("async_retry_attempts", "3", "0, 1 or 2"),
    ("max_upload_bytes", "lots", "'lots'"),
    ("max_upload_bytes", str(10 * 1024 ** 3), "raise lambda_timeout_seconds"),
    ("retain_data", "maybe", "true or false"),
    ("training_max_cells", "-1", ">= 0"),
    ("lambda_snap_start", "sometimes", "true or false"),
    ("training_hyperparameters", '{"target_column": "y"}', "own config key"),
    ("training_hyperparameters", '{"seed": 7}', "strings"),
    ("allowed_extensions", "csv", "'.csv'"),
    ("notification_email", "not-an-email", "e-mail"),
    ("account", "12345", "12-digit"),
    ("target_column", "", "non-empty"),
    ("alarm_period_seconds", "90", "multiple of 60"),
    ("alarm_datapoints_to_alarm", "6", "between 1 and alarm_evaluation_periods"),
    ("deploy_bake_seconds", "3601", "TerminationWaitInSeconds"),
    ("deploy_bake_seconds", "300", "ends before the rollback alarms can fire"),
    ("responsible_ml", '{"facet": []}', "unknown key(s) ['facet']"),
    ("responsible_ml", '{"facets": [{"column": "region"}]}', "'values': [...]"),
    ("responsible_ml", '{"facets": [{"column": "region", "values": []}]}', "non-empty list"),
    ("responsible_ml", '{"facets": [{"column": "age", "threshold": "old"}]}', "threshold must be a number"),
    ("responsible_ml", '{"facets": [{"column": "churn", "values": ["x"]}]}', "is the target column"),
    ("responsible_ml", '{"facets": [], "intended_use": "' + "x" * 1100 + '"}', "1024 characters"),
    ("responsible_ml", '{"facets": [], "positive_label": "yes", "label_threshold": 3}', "exclude each other"),
    ("fairness_gate", '{"DIX": [0.8, 1.25]}', "not a bias metric"),
    ("fairness_gate", '{"DI": [1.25, 0.8]}', "min <= max"),
    ("fairness_gate", '{"DI": 0.8}', "[min, max]"),
])
def test_invalid_values_fail_naming_the_key(key, value, words):
    with pytest.raises(ConfigError) as err:
        load_config(context(stage="dev", **{key: value}))
    assert err.value.key == key
    assert f"'{key}'" in str(err.value) and words in str(err.value)


def test_prod_requires_two_serving_instances():
    with pytest.raises(ConfigError, match="serving_min_instances.*prod needs at least 2"):
        load_config(context(stage="prod", serving_min_instances="1"))
    assert load_config(context(stage="dev", serving_min_instances="1")).serving_min_instances == 1


def test_unknown_stage_and_unknown_keys_are_rejected():
    with pytest.raises(ConfigError, match="'stage'.*'qa' is not one of"):
        load_config(context(stage="qa"))
    ctx = context()
    ctx["stages"]["dev"]["drift_treshold"] = 0.1  # a typo must not be silently ignored
    with pytest.raises(ConfigError, match="'drift_treshold'.*unknown key"):
        load_config(ctx)


def test_missing_key_is_named():
    ctx = context()
    del ctx["stage_defaults"]["metric_namespace"]
    with pytest.raises(ConfigError, match="'metric_namespace'.*missing"):
        load_config(ctx)


def test_dataclass_rejects_invalid_values_even_when_built_directly():
    good = load_config(context())
    values = {k: getattr(good, k) for k in ("stage", *CONFIG_KEYS)}
    values["drift_threshold"] = -1.0
    with pytest.raises(ConfigError, match="'drift_threshold'"):
        StageConfig(**values)


def test_invalid_context_stops_synthesis_with_the_key_in_the_message(tmp_path):
    """`python app.py` (what `cdk synth` runs) exits non-zero and names the key; nothing is synthesized."""
    env = {**os.environ, "CDK_CONTEXT_JSON": json.dumps({"stage": "prod", "serving_min_instances": "1"}),
           "CDK_OUTDIR": str(tmp_path), "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "1"}
    result = subprocess.run([sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode != 0
    assert "serving_min_instances" in result.stderr and "prod needs at least 2" in result.stderr
    assert not list(tmp_path.glob("*.template.json"))


def test_every_config_key_is_documented_with_its_defaults():
    table = [line for line in (ROOT / "docs" / "deploy.md").read_text().splitlines() if line.startswith("| `")]
    documented = {line.split("`")[1]: line for line in table}
    for key in CONFIG_KEYS:
        assert key in documented, f"docs/deploy.md lacks config key {key}"
    dev = load_config(context(stage="dev"))
    for key in ("target_column", "monitor_schedule", "metric_namespace", "base_image", "api_auth"):
        assert f"`{getattr(dev, key)}`" in documented[key], key


def test_bake_time_and_rollback_alarm_window_are_checked_together():
    """Period, datapoints and bake are chosen together: a longer alarm window needs a longer bake."""
    config = load_config(context(stage="dev"))
    assert config.rollback_alarm_seconds <= config.deploy_bake_seconds
    with pytest.raises(ConfigError) as err:
        load_config(context(stage="dev", alarm_period_seconds="300", alarm_evaluation_periods="3",
                            alarm_datapoints_to_alarm="2"))
    assert err.value.key == "deploy_bake_seconds"
    assert "1020 s" in str(err.value) and "600 s" in str(err.value)  # 300 x (2 + 1) + 120 against 600
    longer = load_config(context(stage="dev", alarm_period_seconds="300", alarm_evaluation_periods="3",
                                 alarm_datapoints_to_alarm="2", deploy_bake_seconds="1200"))
    assert longer.rollback_alarm_seconds == 1020


def test_the_training_data_limit_follows_the_training_instances_memory():
    from stacks.config import (TRAINING_FIXED_MEMORY_GIB, TRAINING_MEMORY_USABLE_FRACTION, TRAINING_PEAK_BYTES_PER_CELL,
                               instance_memory_gib)

    assert [instance_memory_gib(t) for t in ("ml.m5.large", "ml.m5.24xlarge", "ml.c5.9xlarge", "ml.r5d.24xlarge",
                                             "ml.m7i-flex.xlarge", "ml.c4.8xlarge", "ml.g5.xlarge")] == [
        8, 384, 72, 768, 16, 60, None]
    small = load_config(context(stage="dev", training_instance_type="ml.m5.large"))
    large = load_config(context(stage="dev", training_instance_type="ml.r5.24xlarge"))
    usable = 8 * TRAINING_MEMORY_USABLE_FRACTION - TRAINING_FIXED_MEMORY_GIB  # ml.m5.large: 8 GiB
    assert small.training_cell_limit == int(usable * 1024 ** 3 / TRAINING_PEAK_BYTES_PER_CELL)
    usable = 768 * TRAINING_MEMORY_USABLE_FRACTION - TRAINING_FIXED_MEMORY_GIB  # ml.r5.24xlarge: 768 GiB
    assert large.training_cell_limit == int(usable * 1024 ** 3 / TRAINING_PEAK_BYTES_PER_CELL)
    assert large.training_cell_limit > 100 * small.training_cell_limit  # the fixed part does not grow with it
    # An explicit limit wins; an instance type sized nowhere here needs one.
    assert load_config(context(stage="dev", training_max_cells="1000")).training_cell_limit == 1000
    with pytest.raises(ConfigError, match="set the most rows x columns"):
        load_config(context(stage="dev", training_instance_type="ml.g5.xlarge"))
    gpu = load_config(context(stage="dev", training_instance_type="ml.g5.xlarge", training_max_cells="5000000"))
    assert gpu.training_cell_limit == 5_000_000
