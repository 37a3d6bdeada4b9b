"""Kedro project settings."""

from ml_pipeline.hooks import GiveBackFreedMemory
from ml_pipeline.paths import opt_ml_root

# `${opt_ml:}` in conf/sagemaker resolves to /opt/ml, or to OPT_ML_ROOT when set (tests, local stack).
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "custom_resolvers": {"opt_ml": lambda: str(opt_ml_root())},
}

# Before each node, memory freed by the previous ones goes back to the system, not kept under the next node's data.
HOOKS = (GiveBackFreedMemory(),)
