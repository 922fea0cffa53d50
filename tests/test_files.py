"""Files a process points the exporter at (its argv "script", a config.json in its working
directory, a descriptor) cannot hang or flood it: a FIFO or /dev/zero is refused at once."""

import os
import threading

import pytest

from minerwatch.investigation import evidence
from minerwatch.detection import miner_config
from minerwatch.detection.allowlist import file_sha256
from minerwatch.detection.exe_content import ExePatterns, ExeScanner
from minerwatch.host.files import open_regular, read_regular


def returns_within(seconds, fn, *args):
    """fn(*args) run in a thread; fails the test if it has not returned in time."""
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("value", fn(*args)), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{fn.__name__}{args} still running after {seconds} s"
    return result["value"]


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "config.json"
    os.mkfifo(path)
    return str(path)


def test_open_regular_refuses_fifos_and_devices(fifo, tmp_path):
    def refused(path):
        try:
            open_regular(path).close()
        except OSError:
            return True
        return False

    for path in (fifo, "/dev/zero", str(tmp_path)):
        assert returns_within(2, refused, path)
        assert returns_within(2, read_regular, path, 100) is None
    regular = tmp_path / "x.json"
    regular.write_bytes(b'{"pools": []}')
    assert read_regular(str(regular), 5) == b'{"poo'


def test_exe_scan_and_hash_never_read_a_device_or_fifo(fifo):
    scanner = ExeScanner(ExePatterns([("stratum", b"mining.subscribe")]))
    assert returns_within(2, scanner.scan_path, "/dev/zero") is None
    assert returns_within(2, scanner.scan_path, fifo) is None
    assert returns_within(2, file_sha256, "/dev/zero") == ""
    assert returns_within(2, file_sha256, fifo) == ""


def test_a_fifo_named_config_json_does_not_hang_the_config_look(fifo, tmp_path):
    assert returns_within(2, miner_config._read, fifo) is None
    assert returns_within(2, evidence.read_regular, fifo, 10) is None
