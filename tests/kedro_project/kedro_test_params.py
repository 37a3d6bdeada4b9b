"""Parameters shared by the Kedro tests (small and fast versions of conf/base)."""

EXPECTATION_SETTINGS = {"mostly": 0.99, "null_tolerance": 0.02, "range_margin": 0.25, "max_set_size": 200}
PROFILE_SETTINGS = {"bins": 10, "quantiles": 201, "max_categories": 200}
TRAINING = {"tuning_iterations": 0, "cv_folds": 3, "max_categories": 32,
            "estimator": {"learning_rate": 0.1, "max_iter": 60, "max_leaf_nodes": 15, "min_samples_leaf": 20},
            "search_space": {"learning_rate": [0.05, 0.3, "log"], "max_leaf_nodes": [7, 31, "int"]}}
SPLIT = {"train": 0.7, "test": 0.2, "validation": 0.1}
