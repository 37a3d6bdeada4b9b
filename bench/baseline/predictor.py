"""The example's predictor.py, for our model: a Flask app; CSV (and JSON) in, pandas, predict, CSV out.

Deltas from the example, each forced by our model rather than chosen for speed: the model file is
`model.joblib` (a scikit-learn Pipeline that selects columns by name, so headerless CSV rows get the
feature names from metadata.json), and `application/json` is accepted because our benchmark sends it.
"""
import io
import json
import os

import flask
import joblib
import pandas as pd

prefix = os.environ.get("OPT_ML_ROOT", "/opt/ml")
model_path = os.path.join(prefix, "model")


class ScoringService:
    model = None
    columns = None

    @classmethod
    def get_model(cls):
        if cls.model is None:
            cls.model = joblib.load(os.path.join(model_path, "model.joblib"))
            with open(os.path.join(model_path, "metadata.json")) as f:
                cls.columns = [feature["name"] for feature in json.load(f)["features"]]
        return cls.model

    @classmethod
    def predict(cls, input):
        return cls.get_model().predict(input)


app = flask.Flask(__name__)


@app.route("/ping", methods=["GET"])
def ping():
    health = ScoringService.get_model() is not None
    status = 200 if health else 404
    return flask.Response(response="\n", status=status, mimetype="application/json")


@app.route("/invocations", methods=["POST"])
def transformation():
    ScoringService.get_model()
    if flask.request.content_type == "text/csv":
        data = flask.request.data.decode("utf-8")
        s = io.StringIO(data)
        data = pd.read_csv(s, header=None, names=ScoringService.columns)
    elif flask.request.content_type == "application/json":
        payload = flask.request.get_json()
        rows = payload["instances"] if isinstance(payload, dict) else payload
        data = pd.DataFrame(rows, columns=None if rows and isinstance(rows[0], dict) else ScoringService.columns)
    else:
        return flask.Response(response="This predictor only supports CSV or JSON data", status=415, mimetype="text/plain")

    print("Invoked with {} records".format(data.shape[0]))

    predictions = ScoringService.predict(data)

    out = io.StringIO()
    pd.DataFrame({"results": predictions}).to_csv(out, header=False, index=False)
    result = out.getvalue()

    return flask.Response(response=result, status=200, mimetype="text/csv")
