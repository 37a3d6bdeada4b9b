"""The baseline serving stack: SageMaker's canonical bring-your-own scikit-learn container, rebuilt here.

nginx (Debian package) → unix socket → gunicorn sync workers (one per core) → a Flask app that loads the
same `model.joblib` and predicts through pandas — the layout of amazon-sagemaker-examples'
`advanced_functionality/scikit_bring_your_own/container/decision_trees` (predictor.py, wsgi.py,
nginx.conf, serve). Kept as close to the example as our model allows; see bench/README.md for the deltas.
"""
