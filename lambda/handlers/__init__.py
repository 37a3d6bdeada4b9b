"""Thin Lambda entry points: parse the event, call mlops_control, return."""
