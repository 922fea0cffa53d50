"""Built-in collectors, one module each; importing this package registers them by name."""

from typing import Dict

from minerwatch.collectors import antivirus, energy, evidence, gpu, host, network, process, tuning, windows  # noqa: F401
from minerwatch.collectors.base import registered


def available() -> Dict[str, type]:
    """Every registered collector by name: the built-in ones above and any registered since."""
    return registered()
