"""What both dashboards share: the knobs read from rules/config/minerwatch.yml, runbook links, UIDs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List

from .grafana import link

FLEET_UID = "minerwatch-fleet"
HOST_UID = "minerwatch-host"
FIRING = 'alertname=~"Minerwatch.*", alertstate="firing"'


@dataclass
class Knobs:
    """The values of rules/config/minerwatch.yml the dashboards show, so panels and alerts agree."""

    runbook_base: str
    strong_signals: List[str]
    disguise_signals: List[str]
    process_cpu_high: float
    peers_factor: float
    peers_min: float
    hugepages_threshold: float
    missing_lookback: str

    @classmethod
    def from_config(cls, config: dict) -> "Knobs":
        return cls(
            runbook_base=config["runbookUrlBase"],
            strong_signals=list(config["strongSignals"]),
            disguise_signals=list(config["disguiseSignals"]),
            process_cpu_high=float(config["processCpuHighThreshold"]),
            peers_factor=float(config["hostCpuAbovePeersFactorThreshold"]),
            peers_min=float(config["hostCpuAbovePeersMinThreshold"]),
            hugepages_threshold=float(config["hugepagesReservedThreshold"]),
            missing_lookback=str(config["exporterMissingLookback"]),
        )

    def runbook(self, alert: str) -> dict:
        """The alert's runbook, where its runbook_url annotation points."""
        return link(f"Runbook: {alert}", f"{self.runbook_base}{alert.lower()}.md")

    def runbooks(self) -> dict:
        return link("Runbooks: all alerts", f"{self.runbook_base}README.md")

    def evidence(self) -> dict:
        return link("Keeping the evidence of a miner", f"{self.runbook_base}README.md#keeping-the-evidence-of-a-miner")


def host_link(job: str = "${__data.fields.job}", instance: str = "${__data.fields.instance}") -> dict:
    """A data link to the host drill-down for the row's (or series') job and instance."""
    url = (f"/d/{HOST_UID}/minerwatch-host?${{datasource:queryparam}}&var-job={job}&var-instance={instance}"
           "&${__url_time_range}")
    return {"title": f"Host drill-down: {instance}", "url": url, "targetBlank": False}
