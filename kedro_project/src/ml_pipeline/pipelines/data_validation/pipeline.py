"""data_validation: new data file (+ production model metadata, if any) → report.json + report.html."""

from kedro.pipeline import Node, Pipeline

from .nodes import render_validation_report, validate_new_data


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([
        Node(validate_new_data, ["new_data_files", "production_model", "params:target_column", "params:task",
                                 "params:expectations", "params:profile", "params:shift_policy"], "validation_report",
             name="validate_new_data"),
        Node(render_validation_report, "validation_report", "validation_report_html", name="render_validation_report"),
    ])
