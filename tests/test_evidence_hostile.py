"""`minerwatch evidence` against a host that fights back, and `evidence verify` saying what it
checked. The process's owner swaps its config for a FIFO or grows it to gigabytes the moment it
has been checked, runs an executable of hundreds of MiB, and evidence is stopped (SIGTERM,
SIGHUP, SIGKILL, its deadline) while it writes: it never hangs, never copies more than its bound,
says when a copy was cut, and never leaves a `.partial-*` directory behind."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
from pathlib import Path

import pytest

from support.cli import minerwatch, start_minerwatch
from support.hostile_files import Trickster, config_text, put_config
from support.processes import stop_pid, wait_for

MAX_CONFIG_BYTES = 1 << 20  # docs/evidence.md: configs are copied up to 1 MiB
HUGE = 4 << 30  # sparse: costs no disk unless someone copies it
BIG_EXE = 448 << 20  # under the 512 MiB above which an executable is not hashed (nor copied)
# A copy that reopens the path hangs in about 1 run of 4 of the loop, and in every run on read.
RUNS = {"swap": 10, "swap-on-read": 4}
HANG = 60  # seconds after which a run of evidence counts as hung


@pytest.fixture
def config(tmp_path):
    """No sniffer, no DNS: evidence of a process on this machine, nothing more."""
    path = tmp_path / "minerwatch.yml"
    path.write_text("network:\n  sniffer: off\n  resolve_max_names: 0\n")
    return path


@pytest.fixture
def workdir(tmp_path):
    path = tmp_path / "work"
    path.mkdir()
    return path


def idle_miner(spawn, workdir):
    """A real process named like a miner, idle: not busy, so only evidence reads its directory."""
    return spawn.start("xmrig", ["-t", "0", "--duration", "600"], cwd=workdir)


def evidence(config, out, *args, timeout=HANG):
    try:
        return minerwatch("evidence", f"--out={out}", "--interval=0", f"--config.file={config}",
                          f"--state.dir={out.parent / 'state'}", *args,
                          timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"minerwatch evidence {' '.join(args)} still running after {timeout} s: it hung")


def partials(out: Path):
    return sorted(p.name for p in out.glob(".partial-*")) if out.exists() else []


def bundles(out: Path):
    return sorted(p for p in out.iterdir() if not p.name.startswith(".")) if out.exists() else []


def copies(bundle: Path):
    """Manifest entries of the files copied from the host."""
    manifest = json.loads((bundle / "MANIFEST.json").read_text())
    return [f for f in manifest["files"] if f["path"] not in ("evidence.json", "SUMMARY.txt", "SHA256SUMS")]


def assert_verified(bundle: Path):
    """verify passes, and says that without the recorded hash it checked consistency only."""
    result = minerwatch("evidence", "verify", bundle, timeout=HANG)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "internal consistency only" in result.stdout, result.stdout
    assert "NOT CHECKED MANIFEST.json against the sha256 recorded at collection" in result.stdout


@pytest.mark.parametrize("mode", ["swap", "swap-on-read"])
def test_config_swapped_with_a_fifo_never_hangs_evidence(spawn, stack, tmp_path, workdir, config, mode):
    """`swap`: regular file and FIFO by rename in a tight loop; `swap-on-read`: a FIFO the moment
    the config has been read, so that opening it again to copy it (as evidence once did) blocks for
    good."""
    path = workdir / "config.json"
    stack.append(Trickster(mode, path))
    miner = idle_miner(spawn, workdir)
    out = tmp_path / "bundles"
    for _ in range(RUNS[mode]):
        if mode == "swap-on-read":  # the last run's FIFO is gone: this run reads the config first
            wait_for(lambda: stat.S_ISREG(path.stat().st_mode), what="the config back in place")
        result = evidence(config, out, f"--pid={miner.pid}")
        assert result.returncode == 0, result.stderr
        assert partials(out) == []
    assert len(bundles(out)) == RUNS[mode]
    found = 0
    for bundle in bundles(out):
        for entry in copies(bundle):
            copy = bundle / entry["path"]
            assert copy.read_bytes() == config_text(), entry  # what was checked, whole, nothing else
            assert entry["size_bytes"] <= MAX_CONFIG_BYTES and entry["truncated"] is False
            found += 1
        assert_verified(bundle)
    if mode == "swap-on-read":
        assert found == RUNS[mode]  # each run read the regular file: the FIFO came after it
    assert miner.poll() is None


def test_config_grown_to_gigabytes_once_checked_is_not_copied_whole(spawn, stack, tmp_path, workdir, config):
    """The config grows in place to 4 GiB (sparse) the moment it has been read: copying it again
    from the path would write gigabytes into the bundle."""
    path = workdir / "config.json"
    stack.append(Trickster("grow-on-read", path, f"--size={HUGE}"))
    miner = idle_miner(spawn, workdir)
    out = tmp_path / "bundles"
    try:
        for _ in range(2):
            put_config(path, config_text())
            result = evidence(config, out, f"--pid={miner.pid}")
            assert path.stat().st_size == HUGE  # the trick was played on this run
            assert result.returncode == 0, result.stderr
            assert partials(out) == []
            bundle = bundles(out)[-1]
            [entry] = copies(bundle)
            assert entry["size_bytes"] == len(config_text()) and entry["truncated"] is False
            assert (bundle / entry["path"]).read_bytes() == config_text()
            assert_verified(bundle)
    finally:
        shutil.rmtree(out, ignore_errors=True)  # a failed run may have copied gigabytes


def test_config_padded_to_gigabytes_is_copied_to_the_bound_and_says_so(spawn, tmp_path, workdir, config):
    """Padding (JSON allows any amount of whitespace) must not hide a config: its first MiB is
    copied, and the manifest, the document, the output and verify say it was cut, and at what size."""
    path = workdir / "config.json"
    path.write_bytes(config_text())
    os.truncate(path, HUGE)
    miner = idle_miner(spawn, workdir)
    out = tmp_path / "bundles"
    result = evidence(config, out, f"--pid={miner.pid}")
    assert result.returncode == 0, result.stderr
    [bundle] = bundles(out)
    [entry] = copies(bundle)
    assert entry["size_bytes"] == MAX_CONFIG_BYTES
    assert entry["truncated"] is True and entry["source_size_bytes"] == HUGE
    with open(path, "rb") as f:
        assert (bundle / entry["path"]).read_bytes() == f.read(MAX_CONFIG_BYTES)
    [doc_entry] = json.loads((bundle / "evidence.json").read_text())["miner_config_files"]
    assert doc_entry["path"] == str(path) and doc_entry["truncated"] is True
    assert doc_entry["size_bytes"] == HUGE and doc_entry["copied_bytes"] == MAX_CONFIG_BYTES
    assert f"{entry['path']}: only the first {MAX_CONFIG_BYTES} bytes copied; the file held {HUGE}" in result.stdout
    verified = minerwatch("evidence", "verify", bundle)
    assert verified.returncode == 0, verified.stdout
    assert f"NOTE {bundle / entry['path']}: holds the first {MAX_CONFIG_BYTES} bytes only; the file held " \
           f"{HUGE} at collection" in verified.stdout


@pytest.fixture
def big_miner(tmp_path, workdir):
    """A real process whose executable is 448 MiB (sleep, padded sparse): copying it takes a while."""
    exe = tmp_path / "bin" / "xmrig"
    exe.parent.mkdir()
    shutil.copy(shutil.which("sleep"), exe)
    os.truncate(exe, BIG_EXE)
    proc = subprocess.Popen([str(exe), "600"], cwd=workdir)
    yield proc
    stop_pid(proc)


def start_copy_exe(config, out, pid, *args):
    """evidence --copy-exe of `pid`, returned once its `.partial-*` directory exists: mid-copy."""
    proc = start_minerwatch("evidence", f"--pid={pid}", "--copy-exe", f"--out={out}", "--interval=0",
                            f"--config.file={config}", f"--state.dir={out.parent / 'state'}", *args)
    try:
        wait_for(lambda: partials(out) or proc.poll() is not None, timeout=HANG, interval=0.005,
                 what="evidence to start writing its bundle")
    except BaseException:
        stop_pid(proc)
        raise
    assert proc.poll() is None, f"evidence ended before it was stopped: {proc.communicate()}"
    return proc


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_stop_signal_mid_collection_leaves_no_partial(big_miner, tmp_path, config, signum):
    out = tmp_path / "bundles"
    proc = start_copy_exe(config, out, big_miner.pid)
    try:
        os.kill(proc.pid, signum)
        _, stderr = proc.communicate(timeout=HANG)
    finally:
        stop_pid(proc)
    assert proc.returncode == -signum  # ended by the signal, as its sender expects, after cleaning up
    assert partials(out) == [] and bundles(out) == []
    assert stderr.strip().splitlines() == [
        f"minerwatch: error: stopped by {signal.Signals(signum).name}: no bundle left half written"]


def test_partial_of_a_killed_run_is_removed_by_the_next(big_miner, tmp_path, config):
    """SIGKILL (a supervisor's last word, `subprocess` timeouts) cannot be caught: the next run
    removes what it left, and only that."""
    out = tmp_path / "bundles"
    proc = start_copy_exe(config, out, big_miner.pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=HANG)
    left = partials(out)
    assert left  # what SIGKILL leaves
    result = evidence(config, out, f"--pid={big_miner.pid}")
    assert result.returncode == 0, result.stderr
    assert partials(out) == [] and len(bundles(out)) == 1


def test_deadline_drops_the_bundle_and_leaves_no_partial(big_miner, tmp_path, config):
    out = tmp_path / "bundles"
    result = evidence(config, out, f"--pid={big_miner.pid}", "--copy-exe", "--timeout=0.2")
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.splitlines() == [
        f"minerwatch: error: pid {big_miner.pid} (xmrig): no bundle: collecting took longer than 0.2 s (--timeout)"]
    assert partials(out) == [] and bundles(out) == []


# -- verify ----------------------------------------------------------------------------------------


@pytest.fixture
def bundle(spawn, tmp_path, workdir, config):
    (workdir / "config.json").write_bytes(config_text())
    miner = idle_miner(spawn, workdir)
    out = tmp_path / "bundles"
    result = evidence(config, out, f"--pid={miner.pid}")
    assert result.returncode == 0, result.stderr
    [path] = bundles(out)
    return path, result.stdout.split("manifest sha256 ")[1].split()[0]


def forge(bundle: Path, edit) -> None:
    """Rewrite the bundle consistently: `edit(manifest)` changes files and the entries, then the
    manifest's own hash is recomputed, as anyone who read minerwatch's source can."""
    from minerwatch.investigation.evidence import manifest_digest

    manifest = json.loads((bundle / "MANIFEST.json").read_text())
    edit(manifest)
    manifest["manifest_sha256"] = manifest_digest(manifest)
    (bundle / "MANIFEST.json").write_text(json.dumps(manifest, indent=2))


def test_verify_says_it_checked_consistency_only_without_the_recorded_hash(bundle):
    path, recorded = bundle
    doc = path / "evidence.json"

    def blame_someone_else(manifest):
        doc.write_text(doc.read_text().replace('"xmrig"', '"firefox"'))
        manifest["files"][0]["sha256"] = hashlib.sha256(doc.read_bytes()).hexdigest()

    forge(path, blame_someone_else)
    now = hashlib.sha256((path / "MANIFEST.json").read_bytes()).hexdigest()
    plain = minerwatch("evidence", "verify", path)
    assert plain.returncode == 0  # consistent on its own, and it says that is all it knows
    assert plain.stdout.splitlines() == [
        f"OK {path}: every file matches MANIFEST.json (sha256 {now}): internal consistency only",
        "NOT CHECKED MANIFEST.json against the sha256 recorded at collection: files and manifest rewritten "
        f"together pass the check above. Compare {now} with the sha256 printed at collection, or run again "
        "with --manifest-sha256 <that sha256> or --records <record file>"]
    caught = minerwatch("evidence", "verify", path, f"--manifest-sha256={recorded.upper()}")
    assert caught.returncode == 1
    assert caught.stdout == f"FAILED {path}/MANIFEST.json: sha256 {now} is not the one recorded at collection\n"
    for bad in ("", "zz" * 32, recorded[:-1]):
        refused = minerwatch("evidence", "verify", path, f"--manifest-sha256={bad}")
        assert refused.returncode == 2, (bad, refused.stdout)
        assert refused.stderr.splitlines() == [
            "minerwatch: error: Invalid value for '--manifest-sha256': must be 64 hexadecimal digits"
            f" (see 'minerwatch evidence verify --help')"]


def test_verify_with_the_recorded_hash_says_so(bundle):
    path, recorded = bundle
    result = minerwatch("evidence", "verify", path, f"--manifest-sha256={recorded}")
    assert result.returncode == 0
    assert result.stdout == (f"OK {path}: every file matches MANIFEST.json, whose sha256 {recorded} is the one "
                             "recorded at collection\n")


def test_verify_of_a_tampered_bundle_never_hangs_nor_follows_links(bundle, tmp_path):
    """A bundle left on the host can be changed by its user: a FIFO where a copy was, a link to a
    file with the same bytes, names that are terminal escapes. verify answers at once, escaped."""
    path, _ = bundle
    [entry] = copies(path)
    copy = path / entry["path"]
    copy.unlink()
    os.mkfifo(copy)
    elsewhere = tmp_path / "elsewhere.json"
    shutil.copy(path / "evidence.json", elsewhere)
    (path / "evidence.json").unlink()
    (path / "evidence.json").symlink_to(elsewhere)

    def escape_name(manifest):
        manifest["files"].append({"path": "files/\x1b[2J\x1b]0;owned\x07", "sha256": "0" * 64})

    forge(path, escape_name)
    result = minerwatch("evidence", "verify", path, timeout=HANG)
    assert result.returncode == 1
    assert f"FAILED {copy}: missing or unreadable (not a regular file)" in result.stdout
    assert f"FAILED {path}/evidence.json: missing or unreadable (not a regular file)" in result.stdout
    assert f"FAILED {path}/files/\\x1b[2J\\x1b]0;owned\\x07: missing or unreadable" in result.stdout
    assert "\x1b" not in result.stdout + result.stderr
