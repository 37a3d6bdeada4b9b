"""Kedro project settings."""

from ml_pipeline.paths import opt_ml_root

# `${opt_ml:}` in conf/sagemaker resolves to /opt/ml, or to OPT_ML_ROOT when set (tests, local stack).
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "custom_resolvers": {"opt_ml": lambda: str(opt_ml_root())},
}
