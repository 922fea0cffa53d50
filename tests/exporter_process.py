"""Moved to support/exporter.py; this name stays until tests/test_dashboards.py imports from there."""

from support.exporter import Exporter, Sample, find  # noqa: F401
