"""monitoring: captured endpoint requests + production model metadata → report.json + report.html."""

from kedro.pipeline import Node, Pipeline

from .nodes import captured_requests, monitor_requests, render_monitoring_report


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([
        Node(captured_requests, ["captured_records", "production_model"], ["captured_features", "capture_counts"],
             name="captured_requests"),
        Node(monitor_requests, ["captured_features", "capture_counts", "production_model"], "monitoring_report",
             name="monitor_requests"),
        Node(render_monitoring_report, "monitoring_report", "monitoring_report_html", name="render_monitoring_report"),
    ])
