"""Moved to support/servers.py; this name stays until tests/test_dashboards.py and
tests/test_global_view*.py import from there."""

from support.servers import Alertmanager, Prometheus, WebhookSink, _Server, binary  # noqa: F401
