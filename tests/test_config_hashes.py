"""minerwatch_config_hash_info: one canonical form of the settings, files re-hashed on change only."""

import os

from minerwatch import config
from minerwatch.app import Options, build_context
from minerwatch.collectors.base import CollectorRunner
from minerwatch.serving.config_hashes import ConfigHashes, FileHashes, canonical, settings_hashes


def hashes_of(tmp_path, name, text, collectors=("process",)):
    path = tmp_path / name
    path.write_text(text)
    context = build_context(Options(config_file=str(path)))
    try:
        return settings_hashes(context, collectors)
    finally:
        context.processes.close()


def test_where_the_config_was_read_and_its_layout_do_not_count(tmp_path):
    one = hashes_of(tmp_path, "a.yml", "process: {top_k: 3}\nallowlist:\n  - exe: /usr/bin/x\n")
    other = hashes_of(tmp_path, "b.yml", "# a comment\nallowlist:\n  - {exe: /usr/bin/x}\nprocess:\n  top_k: 3\n")
    assert one == other


def test_a_setting_an_allowlist_entry_a_pattern_or_a_collector_changes_its_kind(tmp_path):
    base = hashes_of(tmp_path, "a.yml", "process: {top_k: 3}\n")
    assert hashes_of(tmp_path, "b.yml", "process: {top_k: 4}\n")["settings"] != base["settings"]
    allow = hashes_of(tmp_path, "c.yml", "process: {top_k: 3}\nallowlist: [{exe: /opt/m/xmrig}]\n")
    assert allow["settings"] != base["settings"] and allow["patterns"] == base["patterns"]
    signals = hashes_of(tmp_path, "d.yml",
                        "process: {top_k: 3}\nallowlist: [{exe: /opt/m/xmrig, signals: [busy_cpu]}]\n")
    assert signals["settings"] != allow["settings"]
    patterns = hashes_of(tmp_path, "e.yml", "process: {top_k: 3}\nsignatures: {extra_names: [ourminer]}\n")
    assert patterns["patterns"] != base["patterns"] and patterns["settings"] == base["settings"]
    fewer = hashes_of(tmp_path, "f.yml", "process: {top_k: 3}\n", collectors=())
    assert fewer["settings"] != base["settings"]


def test_canonical_form_orders_sets_and_writes_bytes_as_hex():
    assert canonical(frozenset({"b", "a"})) == ["a", "b"]
    assert canonical((b"\x01\xff", {"z": 1, "a": (2,)})) == ["01ff", {"a": [2], "z": 1}]


def test_a_file_is_hashed_again_only_when_it_changes(tmp_path, monkeypatch):
    path = tmp_path / "iocs.txt"
    path.write_text("203.0.113.7\n")
    files = FileHashes()
    reads = []
    import minerwatch.serving.config_hashes as module

    real = module._file_sha256
    monkeypatch.setattr(module, "_file_sha256", lambda p: reads.append(p) or real(p))
    first = files.hash_of(str(path))
    assert files.hash_of(str(path)) == first and len(reads) == 1
    path.write_text("203.0.113.8\n")
    os.utime(path, ns=(1, 1))
    assert files.hash_of(str(path)) != first and len(reads) == 2
    assert files.hash_of(str(tmp_path / "gone.txt")).startswith("unreadable:")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert files.hash_of(str(fifo)).startswith("unreadable:")  # never opened for reading: no hang


def test_the_runner_without_a_context_exports_no_hash():
    family = list(ConfigHashes(CollectorRunner([])).collect())[0]
    assert family.samples == [] and config.Config().file == ""


def test_every_shipped_data_file_is_in_the_shipped_data_hash():
    """An edit of any table the exporter ships (pools, ports, patterns, vendor exclusions, Windows
    program folders) on one desk must show as drift."""
    from minerwatch import data
    from minerwatch.serving import config_hashes

    assert set(config_hashes._SHIPPED) == set(os.listdir(data.DATA_DIR)) - {"__pycache__"}
