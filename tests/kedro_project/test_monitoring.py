from __future__ import annotations

import base64
import json

from ml_pipeline import sample_data
from ml_pipeline.pipelines.monitoring import nodes


def _records(frame, encoding="CSV", content_type="text/csv"):
    records = []
    for _, row in frame.iterrows():
        values = ["" if v != v else str(v) for v in row]
        if content_type == "text/csv":
            data = ",".join(values)
        else:
            data = json.dumps({"instances": [dict(zip(frame.columns, [None if v != v else v for v in row]))]})
        if encoding == "BASE64":
            data = base64.b64encode(data.encode()).decode()
        records.append({"captureData": {"endpointInput": {"observedContentType": content_type, "mode": "INPUT",
                                                          "data": data, "encoding": encoding}},
                        "eventMetadata": {"eventId": "x"}, "eventVersion": "0"})
    return records


def test_captured_csv_json_and_base64_requests_are_parsed_like_serve(production_metadata):
    frame = sample_data.generate(30, seed=31).drop(columns="churn")
    records = (_records(frame.iloc[:10]) + _records(frame.iloc[10:20], "BASE64")
               + _records(frame.iloc[20:], "JSON", "application/json") + [{"captureData": {}}, {"_unreadable": "f:1"}])
    features, counts = nodes.captured_requests(records, production_metadata)
    assert len(features) == 30 and counts == {"records": 32, "records_unreadable": 2}
    assert list(features.columns) == [f["name"] for f in production_metadata["features"]]
    assert features["contract"].tolist() == frame["contract"].tolist()


def test_drifted_traffic_scores_high_and_fresh_traffic_low(production_metadata):
    fresh = nodes.captured_requests(_records(sample_data.generate(300, seed=32).drop(columns="churn")), production_metadata)
    drifted = nodes.captured_requests(_records(sample_data.generate(300, seed=33, drift=True).drop(columns="churn")),
                                      production_metadata)
    fresh_report = nodes.monitor_requests(*fresh, production_metadata)
    drifted_report = nodes.monitor_requests(*drifted, production_metadata)
    assert fresh_report["kind"] == "monitor" and fresh_report["passed"] is True
    assert fresh_report["drift"]["score"] < 0.1 < 0.3 < drifted_report["drift"]["score"]
    assert "churn" not in drifted_report["drift"]["features"]


def test_no_captured_traffic_is_an_empty_report_not_an_error(production_metadata):
    report = nodes.monitor_requests(*nodes.captured_requests([], production_metadata), production_metadata)
    assert report["rows"] == 0 and report["drift"]["score"] == 0.0 and "no scorable requests" in report["summary"]
