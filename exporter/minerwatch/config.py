"""The --config.file: which section each area reads, and the settings they make together.

Every area reads its own section into its own frozen settings object, with one function,
`read_settings(node)`; an absent or empty section means that area's defaults. Command-line
flags override a setting afterwards with `dataclasses.replace` (app.py), never by name here.

    section      read by                            into
    process      process_table.read_settings        ProcessSettings
    signatures   signatures.read_settings           SignatureSettings
    allowlist    allowlist.read_settings            a tuple of AllowRule
    network      network/settings.read_settings     NetworkSettings
    antivirus    antivirus/sources.read_settings    AntivirusSettings
    gpu          collectors/gpu.read_settings       GpuSettings
    energy       collectors/energy.read_settings    EnergySettings

Reading the YAML itself (bounded, every error `file:line: key: problem`) is yaml_file.py's job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Tuple

from minerwatch.detection import allowlist, process_table, signatures
from minerwatch.detection.allowlist import AllowRule
from minerwatch.antivirus import sources as antivirus_sources
from minerwatch.antivirus.sources import AntivirusSettings
from minerwatch.collectors import energy, gpu
from minerwatch.collectors.energy import EnergySettings
from minerwatch.collectors.gpu import GpuSettings
from minerwatch.network import settings as network_settings
from minerwatch.network.settings import NetworkSettings
from minerwatch.detection.process_table import ProcessSettings
from minerwatch.detection.signatures import SignatureSettings
from minerwatch.yaml_file import MAX_BYTES, ConfigError, Node, load_yaml  # noqa: F401 - the names other modules use

# Top-level sections and who reads each; an unknown section is an error.
READERS = {
    "process": process_table.read_settings,
    "signatures": signatures.read_settings,
    "allowlist": allowlist.read_settings,
    "network": network_settings.read_settings,
    "antivirus": antivirus_sources.read_settings,
    "gpu": gpu.read_settings,
    "energy": energy.read_settings,
}
SECTIONS = tuple(READERS)


@dataclass(frozen=True)
class Config:
    """The whole configuration: one settings object per area, defaults where a section is absent."""

    file: str = ""
    process: ProcessSettings = field(default_factory=ProcessSettings)
    signatures: SignatureSettings = field(default_factory=SignatureSettings)
    allowlist: Tuple[AllowRule, ...] = ()
    network: NetworkSettings = field(default_factory=NetworkSettings)
    antivirus: AntivirusSettings = field(default_factory=AntivirusSettings)
    gpu: GpuSettings = field(default_factory=GpuSettings)
    energy: EnergySettings = field(default_factory=EnergySettings)


def load(path: Optional[str]) -> Config:
    """The configuration in `path` (the defaults without one); raises ConfigError naming file,
    line and key for the first problem, in any section, whichever collectors run."""
    if not path:
        return Config()
    root = load_yaml(path)
    sections = root.mapping(SECTIONS) if root is not None else {}
    return Config(file=path, **{name: read(sections.get(name)) for name, read in READERS.items()})
