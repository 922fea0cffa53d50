"""Built-in collectors, one module each; importing this package registers them by name."""

from minerwatch.collectors import antivirus, energy, gpu, host, network, process, tuning, windows  # noqa: F401
