"""The Windows service class and the Event Log writer, hosted the way pywin32 hosts them, over fake
pywin32 C modules; the exporter inside is the real one, serving on 127.0.0.1."""

from __future__ import annotations

import importlib
import logging
import sys
import threading
import urllib.request

import pytest

from support.fakes.win32 import WIN32SERVICE as S, FakeWindows, host_service, install, modules
from support.processes import free_port, wait_for
from support.repo import OFFLINE_CONFIG
from minerwatch.windows.eventlog import MAX_STRING, EventLogHandler


@pytest.fixture
def machine(monkeypatch):
    machine = FakeWindows()
    install(monkeypatch, machine)
    monkeypatch.delitem(sys.modules, "minerwatch.windows.service", raising=False)
    yield machine
    logging.getLogger("minerwatch").handlers.clear()


def service_module():
    return importlib.import_module("minerwatch.windows.service")


def start(machine, svc_module, argv, tmp_path):
    cls = svc_module.MinerwatchService
    cls.argv, cls.log_file = argv, str(tmp_path / "minerwatch.log")
    box = {}
    thread = threading.Thread(target=lambda: box.setdefault("svc", host_service(machine, cls, "minerwatch")))
    thread.start()
    return thread, box


def states(machine):
    return [(r[1], r[3]) for r in machine.status_reports]  # (state, win32 exit code)


def test_service_serves_metrics_and_stops_cleanly_on_the_stop_control(machine, tmp_path):
    svc = service_module()
    port = free_port()
    argv = [f"--web.listen-address=127.0.0.1:{port}", f"--config.file={OFFLINE_CONFIG}",
            "--collector.disable-defaults", "--collector.host"]
    thread, box = start(machine, svc, argv, tmp_path)

    def scrape():
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
        except OSError:
            return None

    body = wait_for(scrape, timeout=20, what="the service's exporter to answer")
    assert "minerwatch_host_cpus" in body
    assert machine.sources.get("minerwatch") is not None  # the framework names its event source
    machine.ctrl_handler(S["SERVICE_CONTROL_STOP"], 0, None)  # what `sc.exe stop minerwatch` delivers
    thread.join(30)
    assert not thread.is_alive()
    assert states(machine) == [(S["SERVICE_START_PENDING"], 0), (S["SERVICE_RUNNING"], 0),
                               (S["SERVICE_STOP_PENDING"], 0), (S["SERVICE_STOP_PENDING"], 0),
                               (S["SERVICE_STOPPED"], 0)]
    assert machine.status_reports[2][6] == svc.STOP_WAIT_HINT_MS  # the drain gets its time
    assert machine.status_reports[1][2] == S["SERVICE_ACCEPT_STOP"] | S["SERVICE_ACCEPT_SHUTDOWN"]
    assert scrape() is None  # the port is closed
    texts = [w[4][0] for w in machine.written if w[0] == "minerwatch"]
    assert any("service starting: minerwatch serve" in t for t in texts)
    assert any("listening on" in t for t in texts)
    assert any("service stopped" in t for t in texts)
    log_file = (tmp_path / "minerwatch.log").read_text()
    assert "listening on" in log_file and "service stopped" in log_file
    assert logging.getLogger("minerwatch").handlers == []  # detached: a restart does not log twice


def test_bad_flags_stop_the_service_with_an_error_so_recovery_restarts_it(machine, tmp_path):
    svc = service_module()
    thread, box = start(machine, svc, ["--web.listen-address=nowhere:port", f"--config.file={OFFLINE_CONFIG}"],
                        tmp_path)
    thread.join(30)
    assert states(machine)[-1] == (S["SERVICE_STOPPED"], 1066)  # ERROR_SERVICE_SPECIFIC_ERROR
    errors = [w[4][0] for w in machine.written if w[0] == "minerwatch" and w[1] == 1]
    assert len(errors) == 1 and "--web.listen-address" in errors[0]
    assert errors[0].startswith("ts=") and "level=error" in errors[0]


def test_missing_config_file_is_an_error_in_the_event_log(machine, tmp_path):
    svc = service_module()
    thread, _ = start(machine, svc, [f"--config.file={tmp_path / 'absent.yml'}",
                                     f"--web.listen-address=127.0.0.1:{free_port()}"], tmp_path)
    thread.join(30)
    assert states(machine)[-1][1] == 1066
    assert any("absent.yml" in w[4][0] for w in machine.written if w[1] == 1)


def test_dispatcher_entry_hosts_the_class_with_the_flags(machine):
    svc = service_module()
    svc.main(["--collector.gpu"])
    assert machine.hosted is svc.MinerwatchService and machine.dispatched
    assert svc.MinerwatchService.argv == ["--collector.gpu"]
    assert "minerwatch" in machine.sources


def test_event_log_levels_ids_and_length_limit():
    machine = FakeWindows()
    e = modules(machine)["win32evtlog"]
    handler = EventLogHandler(e)
    logger = logging.getLogger("minerwatch.test.eventlog")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        logger.debug("not written: below INFO")
        logger.info("exporter started")
        logger.warning("collector slow")
        logger.error("x" * 40000)
    finally:
        logger.removeHandler(handler)
        handler.close()
    assert [(w[1], w[3]) for w in machine.written] == [(4, 1), (2, 2), (1, 3)]
    assert len(machine.written[2][4][0]) == MAX_STRING
    assert handler.source is None  # the source deregistered
