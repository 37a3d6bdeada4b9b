"""mlops_control.settings: every variable of CONTRACTS.md read into one frozen dataclass, bad values refused."""
from __future__ import annotations

import dataclasses
import json

import pytest

from ..helpers import ENV


def _settings(**overrides):
    from mlops_control.settings import Settings

    return Settings.from_env({**ENV, **overrides})


def test_reads_the_contract_variables():
    s = _settings()
    assert s.name_prefix == "mlops-test" and s.endpoint_name == "mlops-test-endpoint"
    assert s.allowed_extensions == (".csv", ".parquet") and s.max_upload_bytes == 1_000_000
    assert s.rollback_alarm_names == ("mlops-test-5xx", "mlops-test-latency")
    assert s.quality_gate.rule_for("classification").metric == "roc_auc"
    assert s.quality_gate.rule_for("regression").threshold == 0.3 and s.quality_gate.tolerance == 0.01
    assert s.training_hyperparameters == {"n_estimators": "50"}
    assert (s.serving_min_instances, s.serving_max_instances, s.scaling_target_invocations) == (1, 3, 200.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.name_prefix = "other"


def test_missing_variables_are_named():
    from mlops_control.settings import ConfigError, Settings

    env = {k: v for k, v in ENV.items() if k not in ("LEDGER_TABLE", "IMAGE_URI")}
    with pytest.raises(ConfigError, match="LEDGER_TABLE, IMAGE_URI"):
        Settings.from_env(env)


@pytest.mark.parametrize("name, value, message", [
    ("TASK", "clustering", "TASK must be"),
    ("MAX_UPLOAD_BYTES", "lots", "must be an integer"),
    ("DATA_CAPTURE_PERCENT", "101", "out of range"),
    ("QUALITY_GATE", "{not json", "not valid JSON"),
    ("QUALITY_GATE", json.dumps({"classification": {"metric": "auc", "threshold": 0.7},
                                 "regression": {"metric": "r2", "threshold": 0.3}}), "not one of"),
    ("QUALITY_GATE", json.dumps({"classification": {"metric": "roc_auc"}}), "malformed"),
    ("TRAINING_HYPERPARAMETERS", "[1, 2]", "JSON object"),
    ("SERVING_MAX_INSTANCES", "0", "out of range"),
    ("DRIFT_THRESHOLD", "high", "must be a number"),
])
def test_invalid_values_are_refused_with_a_clear_message(name, value, message):
    from mlops_control.settings import ConfigError

    with pytest.raises(ConfigError, match=message):
        _settings(**{name: value})


def test_extensions_are_normalised():
    assert _settings(ALLOWED_EXTENSIONS="CSV, .Parquet,").allowed_extensions == (".csv", ".parquet")


def test_optional_variables_have_defaults():
    from mlops_control.settings import Settings

    required = ("NAME_PREFIX", "LEDGER_TABLE", "DATA_BUCKET", "ARTIFACTS_BUCKET", "NOTIFY_TOPIC_ARN", "KMS_KEY_ARN",
                "IMAGE_URI", "TRAINING_ROLE_ARN", "PROCESSING_ROLE_ARN", "MODEL_ROLE_ARN", "ENDPOINT_NAME",
                "MODEL_PACKAGE_GROUP", "TARGET_COLUMN")
    s = Settings.from_env({k: ENV[k] for k in required})
    assert s.training_hyperparameters == {} and s.task == "auto" and s.rollback_alarm_names == ()
    assert s.deploy_bake_seconds == 600


def test_the_fairness_gate_and_the_facets_come_from_the_environment():
    import json

    from mlops_control.settings import ConfigError, Settings

    from ..helpers import ENV

    settings = Settings.from_env({**ENV, "FAIRNESS_GATE": json.dumps({"DI": [0.8, 1.25]}), "RESPONSIBLE_ML": '{"facets": []}'})
    assert settings.fairness_gate == {"DI": (0.8, 1.25)} and settings.responsible_ml == '{"facets": []}'
    assert Settings.from_env(dict(ENV)).fairness_gate == {}
    for bad in ('["DI"]', '{"DI": [1.3, 0.8]}', '{"DI": ["x", 1]}'):
        try:
            Settings.from_env({**ENV, "FAIRNESS_GATE": bad})
        except ConfigError as exc:
            assert "FAIRNESS_GATE" in str(exc)
        else:
            raise AssertionError(f"{bad} was accepted")
