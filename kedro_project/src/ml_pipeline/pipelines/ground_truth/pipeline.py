"""ground_truth (`join-labels`): labels file + captured requests + production model → labeled.csv + report."""

from kedro.pipeline import Node, Pipeline

from .nodes import join_labels, read_captures, read_labels, render_ground_truth_report


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([
        Node(read_captures, ["captured_records", "production_model"], ["captured_rows", "capture_counts"],
             name="read_captures"),
        Node(read_labels, ["labels_files", "production_model", "params:ground_truth"], ["labels", "labels_read"],
             name="read_labels"),
        Node(join_labels, ["labels", "labels_read", "captured_rows", "capture_counts", "scoring_model",
                           "params:ground_truth"], ["labeled_data", "ground_truth_report"], name="join_labels"),
        Node(render_ground_truth_report, "ground_truth_report", "ground_truth_report_html",
             name="render_ground_truth_report"),
    ])
