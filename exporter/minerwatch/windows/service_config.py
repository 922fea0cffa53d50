"""This exporter's own service settings: does it start at boot, is it restarted when it dies.

A local administrator who wants the exporter gone quietly sets the service to manual or removes
its recovery actions first, then stops it. Exported while it still runs, that change is the
warning before the ExporterDown alert.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from minerwatch.windows import ReadFailed, describe, winerror_of


@dataclass(frozen=True)
class ServiceConfig:
    autostart: bool
    restart_on_failure: bool  # restart actions set, and applied to stops with an error too


class ServiceConfigReader:
    def __init__(self, win32service, name: str):
        self.w, self.name = win32service, name

    def read(self) -> Optional[ServiceConfig]:
        """None when no such service is installed (the exporter runs from a console)."""
        w = self.w
        try:
            scm = w.OpenSCManager(None, None, w.SC_MANAGER_CONNECT)
        except Exception as exc:
            raise ReadFailed(f"service control manager: {describe(exc)}") from None
        try:
            try:
                handle = w.OpenService(scm, self.name, w.SERVICE_QUERY_CONFIG)
            except Exception as exc:
                if winerror_of(exc) == 1060:  # ERROR_SERVICE_DOES_NOT_EXIST
                    return None
                raise
            try:
                start_type = w.QueryServiceConfig(handle)[1]
                actions = w.QueryServiceConfig2(handle, w.SERVICE_CONFIG_FAILURE_ACTIONS) or {}
                flag = w.QueryServiceConfig2(handle, w.SERVICE_CONFIG_FAILURE_ACTIONS_FLAG)
            finally:
                w.CloseServiceHandle(handle)
        except Exception as exc:
            raise ReadFailed(f"service {self.name}: {describe(exc)}") from None
        finally:
            w.CloseServiceHandle(scm)
        restarts = any(kind == w.SC_ACTION_RESTART for kind, _delay in (actions.get("Actions") or ()))
        return ServiceConfig(autostart=start_type == w.SERVICE_AUTO_START, restart_on_failure=restarts and bool(flag))
