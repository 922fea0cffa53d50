"""minerwatch: a Prometheus exporter that catches cryptocurrency miners on a host."""

__version__ = "0.1.0"
