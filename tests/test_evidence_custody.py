"""Chain of custody of evidence bundles: `evidence` records each manifest's sha256 on the
host, the exporter passes the record on to Prometheus (`minerwatch_evidence_bundle_info`), and
`evidence verify` checks a whole --out directory, against that record when given it. A bundle
rewritten consistently on the host (files, manifest and the manifest's own hash) passes on its own
and fails against the record, while the exporter keeps exposing the hash taken at collection."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import time
import subprocess
from pathlib import Path

import pytest

from support.cli import minerwatch
from support.exporter import Exporter, find

SHA = re.compile(r"manifest sha256 ([0-9a-f]{64})")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def config(tmp_path):
    """No sniffer, no DNS: evidence of a process on this machine, nothing more."""
    path = tmp_path / "minerwatch.yml"
    path.write_text("network:\n  sniffer: off\n  resolve_max_names: 0\n")
    return path


@pytest.fixture
def miner(spawn, tmp_path):
    """A real process named like a miner, idle, its XMRig config in its working directory."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "config.json").write_text(json.dumps(
        {"donate-level": 1, "pools": [{"url": "stratum+tcp://127.0.0.1:3333", "user": "wallet", "pass": "x"}]}))
    return spawn.start("xmrig", ["-t", "0", "--duration", "600"], cwd=workdir)


def collect(config, out: Path, state: Path, pid: int, *args):
    """One run of `evidence`; (its stdout, the bundle it wrote, the sha256 it printed)."""
    before = set(out.iterdir()) if out.exists() else set()
    result = minerwatch("evidence", f"--pid={pid}", f"--out={out}", "--interval=0", f"--config.file={config}",
                        f"--state.dir={state}", *args)
    assert result.returncode == 0, result.stderr
    [bundle] = [p for p in set(out.iterdir()) - before if not p.name.startswith(".")]
    return result.stdout, bundle, SHA.search(result.stdout).group(1)


def forge(bundle: Path) -> str:
    """Rewrite the bundle consistently, as anyone who read minerwatch's source can: the process
    name changed in evidence.json, its manifest entry and the manifest's own hash recomputed.
    Returns the new sha256 of MANIFEST.json."""
    from minerwatch.investigation.bundles import manifest_digest

    doc = bundle / "evidence.json"
    doc.write_text(doc.read_text().replace('"xmrig"', '"firefox"'))
    manifest = json.loads((bundle / "MANIFEST.json").read_text())
    [entry] = [f for f in manifest["files"] if f["path"] == "evidence.json"]
    entry["sha256"] = sha256(doc)
    manifest["manifest_sha256"] = manifest_digest(manifest)
    (bundle / "MANIFEST.json").write_text(json.dumps(manifest, indent=2))
    return sha256(bundle / "MANIFEST.json")


def evidence_exporter(state: Path, stack) -> Exporter:
    exporter = Exporter(["--collector.disable-defaults", "--collector.evidence", f"--state.dir={state}"])
    stack.append(exporter)
    return exporter


def bundle_series(exporter: Exporter):
    samples = exporter.scrape()
    assert find(samples, "minerwatch_scrape_collector_success", collector="evidence")[0][1] == 1
    info = sorted((s["pid"], s["manifest_sha256"], v) for s, v in samples.get("minerwatch_evidence_bundle_info", []))
    stamps = {(s["pid"], s["manifest_sha256"]): v
              for s, v in samples.get("minerwatch_evidence_bundle_timestamp_seconds", [])}
    invalid = samples["minerwatch_evidence_records_invalid"][0][1]
    return info, stamps, invalid


# -- verify over a directory ------------------------------------------------------------------------


def test_verify_a_directory_says_which_bundle_is_which(tmp_path, config, miner):
    out, state = tmp_path / "bundles", tmp_path / "state"
    _, good, _ = collect(config, out, state, miner.pid)
    _, bad, _ = collect(config, out, state, miner.pid)
    data = bytearray((bad / "evidence.json").read_bytes())
    data[len(data) // 2] ^= 1
    (bad / "evidence.json").write_bytes(bytes(data))
    # Not searched: a bundle being written, and a link to a folder elsewhere (whatever it holds).
    (out / ".partial-0123456789abcdef").mkdir()
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(bad, elsewhere / bad.name)
    (out / "linked").symlink_to(elsewhere, target_is_directory=True)
    # Found: bundles a few folders down (a case kept per site and host).
    nested = out / "case-17" / "hq" / good.name
    shutil.copytree(good, nested)

    result = minerwatch("evidence", "verify", out)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    by_bundle = {line.split()[1].rstrip(":"): line for line in lines if line.startswith(("OK ", "FAILED "))}
    assert set(by_bundle) == {str(good), str(bad), str(nested)}, result.stdout
    assert by_bundle[str(good)].startswith(f"OK {good}: every file matches MANIFEST.json (sha256 ")
    assert by_bundle[str(nested)].startswith(f"OK {nested}: ")
    assert re.match(rf"FAILED {re.escape(str(bad))}: evidence\.json: sha256 [0-9a-f]{{64}} differs from the "
                    "manifest's", by_bundle[str(bad)]), by_bundle[str(bad)]
    assert "3 bundles: 2 OK, 1 FAILED" in lines
    assert any(line.startswith("NOT CHECKED any MANIFEST.json against the sha256 recorded") for line in lines)
    assert "linked" not in result.stdout and ".partial-" not in result.stdout

    shutil.rmtree(bad)
    assert minerwatch("evidence", "verify", out).returncode == 0
    one = minerwatch("evidence", "verify", out, f"--manifest-sha256={'0' * 64}")
    assert one.returncode == 2 and "--manifest-sha256 checks one bundle" in one.stderr


# -- the record, the exporter, and a consistent rewrite ---------------------------------------------


def test_a_consistent_rewrite_no_longer_matches_the_recorded_hash(tmp_path, config, miner, stack):
    out, state = tmp_path / "bundles", tmp_path / "state"
    stdout, forged, recorded = collect(config, out, state, miner.pid)
    time.sleep(1.1)  # collection times are in seconds: two bundles of one second could be equal
    _, kept, kept_sha = collect(config, out, state, miner.pid)
    assert kept_sha != recorded
    records = state / "evidence-records.jsonl"
    assert f"Recorded in {records}" in stdout
    assert stat.S_IMODE(records.stat().st_mode) == 0o644  # the investigator's (root's) file, readable
    lines = [json.loads(line) for line in records.read_text().splitlines()]
    assert [(r["pid"], r["bundle"], r["manifest_sha256"]) for r in lines] == [
        (miner.pid, str(forged), recorded), (miner.pid, str(kept), kept_sha)]
    collected_at = json.loads((forged / "evidence.json").read_text())["collected_at"]
    assert lines[0]["time"] == collected_at

    exporter = evidence_exporter(state, stack)
    info, stamps, invalid = bundle_series(exporter)
    assert info == sorted([(str(miner.pid), recorded, 1.0), (str(miner.pid), kept_sha, 1.0)])
    assert stamps[(str(miner.pid), recorded)] == lines[0]["time_seconds"] and invalid == 0

    now = forge(forged)
    assert now != recorded
    assert minerwatch("evidence", "verify", forged).returncode == 0  # consistent on its own

    given = minerwatch("evidence", "verify", forged, f"--manifest-sha256={recorded}")
    assert given.returncode == 1
    assert given.stdout == f"FAILED {forged}/MANIFEST.json: sha256 {now} is not the one recorded at collection\n"

    against = minerwatch("evidence", "verify", out, f"--records={records}")
    assert against.returncode == 1, against.stdout + against.stderr
    assert re.search(rf"^FAILED {re.escape(str(forged))}: MANIFEST\.json: sha256 {now} is not the one recorded "
                     rf"at collection \({recorded}, pid {miner.pid}, {collected_at}\)", against.stdout, re.M)
    assert re.search(rf"^OK {re.escape(str(kept))}: every file matches MANIFEST.json \(sha256 {kept_sha}\): "
                     rf"recorded at collection \(the record of pid {miner.pid} at ", against.stdout, re.M)
    assert "2 bundles: 1 OK, 1 FAILED" in against.stdout and "NOT CHECKED" not in against.stdout

    single = minerwatch("evidence", "verify", kept, f"--records={records}")
    assert single.returncode == 0 and single.stdout.startswith(f"OK {kept}: every file matches MANIFEST.json, "
                                                               f"whose sha256 {kept_sha} is the one recorded")
    # A bundle the record does not know is not taken on trust.
    stranger = tmp_path / "stranger" / "20250101T000000.000000Z-pid1"
    shutil.copytree(kept, stranger)
    unknown = minerwatch("evidence", "verify", stranger, f"--records={records}")
    assert unknown.returncode == 1 and "no record of this bundle in" in unknown.stdout

    # The exporter (and so Prometheus) still has the hash taken at collection, not the forger's.
    info, _, _ = bundle_series(exporter)
    assert (str(miner.pid), recorded, 1.0) in info and not [i for i in info if i[1] == now]


def test_the_record_is_kept_when_it_cannot_be_written(tmp_path, config, miner):
    """A record that cannot be written (the state dir's parent is a file here) leaves the bundle
    standing, said on stderr."""
    out, state = tmp_path / "bundles", tmp_path / "a-file" / "state"
    state.parent.write_text("")
    result = minerwatch("evidence", f"--pid={miner.pid}", f"--out={out}", "--interval=0",
                        f"--config.file={config}", f"--state.dir={state}")
    assert result.returncode == 0, result.stderr
    assert "minerwatch: warning:" in result.stderr and "not recorded in" in result.stderr
    [bundle] = [p for p in out.iterdir() if not p.name.startswith(".")]
    assert minerwatch("evidence", "verify", bundle).returncode == 0


# -- the record file is the host's ------------------------------------------------------------------


def record(pid: int, when: float, sha: str) -> str:
    return json.dumps({"time": "x", "time_seconds": when, "pid": pid, "bundle": f"/b/{pid}", "manifest_sha256": sha})


def test_a_hostile_record_file_never_fails_a_scrape(tmp_path, stack):
    import time

    state = tmp_path / "state"
    state.mkdir()
    path = state / "evidence-records.jsonl"
    now = time.time()
    lines = [record(1000 + n, now - 3600 + n, f"{n:064x}") for n in range(20)]  # 20 recent: 16 shown
    lines.append(record(7, now - 8 * 86400, "a" * 64))  # older than a week: not shown
    lines += ["not json", json.dumps({"pid": "1"}), record(8, now, "NOT-A-SHA"), record(9, now, "b" * 64)[:-1],
              "[" * 100000, json.dumps({"time_seconds": True, "pid": 1, "bundle": "", "manifest_sha256": "c" * 64})]
    path.write_text("\n".join(lines) + "\n")
    exporter = evidence_exporter(state, stack)
    info, _, invalid = bundle_series(exporter)
    assert [pid for pid, _, _ in info] == sorted(str(1000 + n) for n in range(4, 20))
    assert invalid == 6

    # Grown to gigabytes (sparse) with the records at its end: read from the end, bounded.
    with open(path, "r+b") as f:
        f.truncate(4 << 30)
        f.seek(0, os.SEEK_END)
        f.write(("\n" + record(4242, now, "d" * 64) + "\n").encode())
    info, _, invalid = bundle_series(exporter)
    assert info == [("4242", "d" * 64, 1.0)] and invalid == 0

    # A FIFO, then a link to a file elsewhere: nothing read, nothing hangs, the collector succeeds.
    path.unlink()
    os.mkfifo(path)
    assert bundle_series(exporter) == ([], {}, 0)
    path.unlink()
    (tmp_path / "other.jsonl").write_text(record(5, now, "e" * 64) + "\n")
    path.symlink_to(tmp_path / "other.jsonl")
    assert bundle_series(exporter) == ([], {}, 0)


def test_the_record_file_is_bounded(tmp_path):
    from minerwatch.investigation import custody

    for n in range(3000):  # about three files' worth
        custody.append(str(tmp_path), custody.Record(1.7e9 + n, 1 + n, f"/b/{n}", f"{n:064x}"))
    current, older = tmp_path / custody.RECORDS, tmp_path / (custody.RECORDS + ".1")
    assert sorted(p.name for p in tmp_path.iterdir()) == [custody.RECORDS, custody.RECORDS + ".1"]
    assert current.stat().st_size <= custody.MAX_FILE_BYTES and older.stat().st_size <= custody.MAX_FILE_BYTES
    kept = custody.read(str(older))[0] + custody.read(str(current))[0]
    assert kept[-1].pid == 3000 and [r.pid for r in kept] == list(range(kept[0].pid, 3001))


# -- which files are copied, and the summary for people ---------------------------------------------


def test_only_miner_configs_are_copied_and_the_summary_is_covered(spawn, tmp_path, config):
    """A project's README that talks about pools and the donate-level is not a miner's
    configuration (the detector's classify says so); the XMRig config beside it is. The summary
    in the language asked for is in the bundle, and the manifest covers it, as does SHA256SUMS,
    which coreutils checks."""
    workdir = tmp_path / "project"
    workdir.mkdir()
    (workdir / "README.md").write_text(
        "# Pool tuning\n\nOur connection pools (see \"pools\": below) keep donate-level traffic low.\n"
        '```\n"pools": 4, "algo": "round-robin"\n```\nSee also nicehash.md and pool_url settings.\n')
    config_json = {"donate-level": 1, "pools": [{"url": "stratum+tcp://127.0.0.1:3333", "user": "w", "pass": "x"}]}
    (workdir / "config.json").write_text(json.dumps(config_json))
    process = spawn.start("xmrig", ["-t", "0", "--duration", "600"], cwd=workdir)
    out, state = tmp_path / "bundles", tmp_path / "state"
    _, bundle, _ = collect(config, out, state, process.pid, "--lang=ru")
    doc = json.loads((bundle / "evidence.json").read_text())
    assert [c["path"] for c in doc["miner_config_files"]] == [str(workdir / "config.json")]
    from minerwatch.detection.miner_config import classify

    assert doc["miner_config_files"][0]["why"] == classify((workdir / "config.json").read_text())  # its reason
    assert sorted(p.name for p in (bundle / "files").iterdir()) == ["01-config.json"]

    summary = (bundle / "SUMMARY.txt").read_text(encoding="utf-8")
    assert re.search("[а-яА-Я]", summary) and str(process.pid) in summary
    manifest = json.loads((bundle / "MANIFEST.json").read_text())
    assert {"path": "SUMMARY.txt", "sha256": sha256(bundle / "SUMMARY.txt"),
            "size_bytes": (bundle / "SUMMARY.txt").stat().st_size} in manifest["files"]

    # The hashes checked without minerwatch: coreutils' sha256sum on the bundle's SHA256SUMS.
    sums = subprocess.run(["sha256sum", "--check", "--strict", "SHA256SUMS"], cwd=bundle, capture_output=True,
                          text=True, timeout=60)
    assert sums.returncode == 0, sums.stdout + sums.stderr
    assert sorted(sums.stdout.splitlines()) == sorted(
        f"{f['path']}: OK" for f in manifest["files"] if f["path"] != "SHA256SUMS")

    (bundle / "SUMMARY.txt").write_text(summary.replace(str(process.pid), "1"), encoding="utf-8")
    changed = minerwatch("evidence", "verify", bundle)
    assert changed.returncode == 1 and "SUMMARY.txt: sha256" in changed.stdout
    sums = subprocess.run(["sha256sum", "--check", "--strict", "SHA256SUMS"], cwd=bundle, capture_output=True,
                          text=True, timeout=60)
    assert sums.returncode == 1 and "SUMMARY.txt: FAILED" in sums.stdout
