"""The process table: classification once per process life, recent CPU, top-K, allowlist, sources."""

import pytest

from minerwatch.detection.allowlist import Allowlist, AllowRule
from minerwatch.host.proc_reader import ProcfsReader
from minerwatch.detection.process_table import ProcessSettings, ProcessTable
from minerwatch.detection.signatures import Match, Signatures
from support.procfs import TICKS, FakeProcess, build

WALLET = "44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A"


class CountingReader(ProcfsReader):
    """The real /proc reader, counting how often the static facts are read."""

    def __init__(self, procfs):
        super().__init__(procfs)
        self.fact_reads = 0

    def facts(self, stat):
        self.fact_reads += 1
        return super().facts(stat)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def host(tmp_path, processes):
    return str(build(tmp_path, processes))


MINER = FakeProcess(100, "xmrig", ["./xmrig", "-o", "stratum+tcp://pool.example:3333", "-u", WALLET,
                                    "-p", "secret", "--donate-level", "1"], exe="/home/bob/xmrig", utime=0)
COMPILER = FakeProcess(200, "cc1plus", ["/usr/lib/gcc/x86_64-linux-gnu/12/cc1plus", "-quiet", "big.cc",
                                        "-o", "/tmp/ccX.s"], exe="/usr/lib/gcc/x86_64-linux-gnu/12/cc1plus")
RENAMED = FakeProcess(300, "kworkerd", ["kworkerd"], exe="/var/tmp/.cache/kworkerd", cwd="/var/tmp/.cache")
IDLE = FakeProcess(400, "bash", ["-bash"], exe="/usr/bin/bash")


def make_table(tmp_path, processes, clock, **kw):
    reader = CountingReader(host(tmp_path, processes))
    settings = ProcessSettings(**kw.pop("settings", {}))
    table = ProcessTable(reader, Signatures(), settings=settings, clock=clock,
                         wall_clock=lambda: reader._boot_time + 10_000, **kw)
    return table, reader


def set_cpu(tmp_path, pid, ticks):
    """Advance a fixture process's CPU time, as the kernel would."""
    from support.procfs import stat_line

    stat = tmp_path / "proc" / str(pid) / "stat"
    fields = stat.read_text()
    proc = {p.pid: p for p in (MINER, COMPILER, RENAMED, IDLE)}[pid]
    proc = FakeProcess(**{**proc.__dict__, "utime": ticks})
    stat.write_text(stat_line(proc))
    assert stat.read_text() != fields or ticks == 0


def test_classifies_a_miner_once_per_life(tmp_path):
    clock = Clock()
    table, reader = make_table(tmp_path, [MINER, COMPILER, IDLE], clock)
    snap = table.scan()
    assert [v.pid for v in snap.suspects] == [100]
    miner = snap.by_pid()[100]
    assert {"miner_name", "pool_url", "miner_cmdline", "wallet_address"} <= set(miner.signals)
    assert not snap.by_pid()[200].suspect and not snap.by_pid()[400].suspect
    assert reader.fact_reads == 3
    clock.now += 15
    table.scan()
    assert reader.fact_reads == 3  # static facts are cached by (pid, start time)


def test_pid_reuse_is_a_new_process(tmp_path):
    clock = Clock()
    table, reader = make_table(tmp_path, [MINER], clock)
    table.scan()
    # The miner exits and an innocent process gets its pid, with a later start time.
    stat = tmp_path / "proc" / "100"
    innocent = FakeProcess(100, "bash", ["-bash"], exe="/usr/bin/bash", start_ticks=MINER.start_ticks + 500)
    from support.procfs import stat_line

    (stat / "stat").write_text(stat_line(innocent))
    (stat / "cmdline").write_bytes(b"-bash\0")
    (stat / "exe").unlink()
    (stat / "exe").symlink_to("/usr/bin/bash")
    snap = table.scan()
    assert reader.fact_reads == 2
    assert snap.suspects == []


def test_recent_cpu_and_top_k(tmp_path):
    clock = Clock()
    table, _ = make_table(tmp_path, [MINER, COMPILER, RENAMED, IDLE], clock, settings={"top_k": 2})
    table.scan()
    clock.now += 10
    set_cpu(tmp_path, 200, 10 * TICKS)  # compiler: one full core over 10 s
    set_cpu(tmp_path, 300, 15 * TICKS)  # renamed: 1.5 cores
    snap = table.scan()
    assert snap.by_pid()[200].cpu_cores == pytest.approx(1.0)
    assert snap.by_pid()[300].cpu_cores == pytest.approx(1.5)
    assert [v.pid for v in snap.top] == [300, 200]
    # The renamed process from /var/tmp is disguised and busy: suspect; the compiler is not.
    assert snap.by_pid()[300].suspect and "exe_in_temp_dir" in snap.by_pid()[300].signals
    assert not snap.by_pid()[200].suspect
    assert [v.pid for v in snap.watched(max_suspects=20)] == [300, 100, 200]
    assert [v.pid for v in snap.watched(max_suspects=0)] == [300, 200]


def test_a_busy_build_working_in_tmp_is_not_disguised(tmp_path):
    """The working directory never counts (builds and installers live in /tmp); a script there does."""
    build_job = FakeProcess(600, "python3", ["python3", "-c", "import setup"], exe="/usr/bin/python3.11",
                            cwd="/tmp/pip-build-x1", utime=50 * TICKS, start_ticks=9000 * TICKS)
    dropped = FakeProcess(601, "python3", ["python3", "/tmp/.x/m.py"], exe="/usr/bin/python3.11",
                          cwd="/home/u", utime=50 * TICKS, start_ticks=9000 * TICKS)
    table, _ = make_table(tmp_path, [build_job, dropped], Clock())
    snap = table.scan()
    assert snap.by_pid()[600].signals == {} and not snap.by_pid()[600].suspect
    assert snap.by_pid()[601].signals["exe_in_temp_dir"] == "script in a temp folder: /tmp/.x/m.py"


def test_disguise_alone_is_not_suspect_while_idle(tmp_path):
    table, _ = make_table(tmp_path, [RENAMED], Clock())
    view = table.scan().by_pid()[300]
    assert "exe_in_temp_dir" in view.signals and not view.suspect


def test_idle_processes_stay_out_of_the_top(tmp_path):
    table, _ = make_table(tmp_path, [IDLE, COMPILER], Clock())
    assert table.scan().top == []


def test_an_allowlisted_process_that_says_it_mines_stays_suspect(tmp_path):
    """Identity signals are never explained: the allowlist cannot silence a miner."""
    allow = Allowlist([AllowRule(name="xmrig", user=None, exe="/home/bob/*")])
    table, _ = make_table(tmp_path, [MINER], Clock(), allowlist=allow)
    view = table.scan().by_pid()[100]
    assert not view.allowlisted and view.suspect and {"pool_url", "miner_cmdline"} <= set(view.signals)


def test_allowlist_by_sha256_reads_the_running_binary(tmp_path):
    from minerwatch.detection.allowlist import file_sha256

    binary = tmp_path / "backup-tool"
    binary.write_bytes(b"\x7fELF pretend binary")
    proc = FakeProcess(500, "backup-tool", ["backup-tool", "--all"], exe=str(binary))
    good = Allowlist([AllowRule(sha256=file_sha256(str(binary)))])
    table, _ = make_table(tmp_path / "a", [proc], Clock(), allowlist=good)
    # the scan does not hash: not allowlisted until the background worker has the hash
    assert not table.scan().by_pid()[500].allowlisted
    assert table.exe_scans.drain(10)
    assert table.scan().by_pid()[500].allowlisted
    bad = Allowlist([AllowRule(sha256="0" * 64)])
    table, _ = make_table(tmp_path / "b", [proc], Clock(), allowlist=bad)
    table.scan()
    assert table.exe_scans.drain(10)
    assert not table.scan().by_pid()[500].allowlisted


class PoolDirs:
    """A signal source like the network one: flags processes (here by cwd) with a strong signal."""

    def __init__(self):
        self.generation = 0
        self.dirs = set()
        self.calls = 0

    def refresh(self):
        pass

    def match(self, facts):
        self.calls += 1
        if facts.cwd in self.dirs:
            return Match("pool_connection", f"working directory {facts.cwd} is listed")
        return None


def test_signal_sources_are_asked_again_only_when_they_change(tmp_path):
    source = PoolDirs()
    table, _ = make_table(tmp_path, [RENAMED, IDLE], Clock(), signal_sources=[source])
    assert not table.scan().by_pid()[300].suspect
    assert source.calls == 2
    table.scan()
    assert source.calls == 2  # same generation: cached answers
    source.dirs.add("/var/tmp/.cache")
    source.generation += 1
    view = table.scan().by_pid()[300]
    assert view.suspect and view.signals["pool_connection"] == "working directory /var/tmp/.cache is listed"


def test_read_errors_are_counted_not_fatal(tmp_path):
    table, _ = make_table(tmp_path, [IDLE], Clock())
    (tmp_path / "proc" / "400" / "stat").unlink()  # vanished between listing and reading
    snap = table.scan()
    assert snap.processes == [] and sum(table.read_errors_total.values()) == 0


class BrokenForOne(CountingReader):
    """The real /proc reader, with a bug that strikes one process: its facts raise (or, with
    `in_stat`, its stat line does), as an unforeseen format or a parser bug would."""

    def __init__(self, procfs, pid, in_stat=False):
        super().__init__(procfs)
        self.broken_pid, self.in_stat = pid, in_stat

    def stat(self, pid, last=None):
        if self.in_stat and pid == self.broken_pid:
            raise IndexError("list index out of range")
        return super().stat(pid, last)

    def facts(self, stat):
        if stat.pid == self.broken_pid:
            raise UnicodeEncodeError("utf-8", "bad\udcffdir", 3, 4, "surrogates not allowed")
        return super().facts(stat)


@pytest.mark.parametrize("in_stat", [False, True])
def test_one_process_that_raises_is_skipped_and_counted(tmp_path, caplog, in_stat):
    reader = BrokenForOne(host(tmp_path, [MINER, COMPILER, RENAMED, IDLE]), pid=200, in_stat=in_stat)
    table = ProcessTable(reader, Signatures(), clock=Clock(), wall_clock=lambda: reader._boot_time + 10_000)
    snap = table.scan()
    assert sorted(snap.by_pid()) == [100, 300, 400]  # the others are still classified
    assert [v.pid for v in snap.suspects] == [100]
    assert snap.skipped == 1 and table.skipped_total == 1
    table.scan()
    assert table.skipped_total == 2  # tried again each scan, counted again
    logged = [r for r in caplog.records if "process 200 skipped" in r.getMessage()]
    assert len(logged) == 1  # but logged once: a process failing every scrape must not flood the log
    assert "\udcff" not in logged[0].getMessage()  # the reason is host text too


def test_collector_reports_skipped_processes_and_still_succeeds(tmp_path):
    from prometheus_client import CollectorRegistry, generate_latest

    from minerwatch.collectors.process import ProcessCollector
    from minerwatch.config import Config
    from minerwatch.collectors.base import Context

    reader = BrokenForOne(host(tmp_path, [MINER, COMPILER, IDLE]), pid=200)
    context = Context(config=Config())
    context.processes = ProcessTable(reader, Signatures(), clock=Clock(),
                                     wall_clock=lambda: reader._boot_time + 10_000)
    registry = CollectorRegistry()
    registry.register(ProcessCollector(context))
    text = generate_latest(registry).decode()
    scans = context.processes.skipped_total  # one skip per scan: the registry scans at register too
    assert scans >= 1 and f"minerwatch_process_skipped_total {float(scans)}" in text
    assert registry.get_sample_value("minerwatch_process_processes") == 2
    assert registry.get_sample_value("minerwatch_process_suspects") == 1
    assert 'minerwatch_process_suspect_info{' in text and 'pid="100"' in text


# -- wiring: sources added after the table was built (issue 12 item 2) ----------------------------
class Shares:
    """A busy source: each pid's share of one device (a GPU), as the gpu collector reports it."""

    def __init__(self, shares):
        self.shares = shares

    def busy_shares(self):
        return self.shares


def test_sources_added_after_construction_are_asked(tmp_path):
    table, _ = make_table(tmp_path, [RENAMED, IDLE], Clock())
    source = PoolDirs()
    source.dirs.add("/var/tmp/.cache")
    table.add_signal_source(source)  # as a collector built after the table does
    view = table.scan().by_pid()[300]
    assert view.signals["pool_connection"] == "working directory /var/tmp/.cache is listed"
    assert table.signal_sources == (source,)


@pytest.mark.parametrize("busy_cores, share, suspect", [
    (0.5, 0.6, True),   # over the threshold on the device
    (0.5, 0.4, False),  # under it
    (2.0, 1.0, True),   # a threshold above one core means all of a device: a device is at most 1
    (2.0, 0.9, False),
])
def test_busy_threshold_on_a_device_is_the_tables(tmp_path, busy_cores, share, suspect):
    """The renamed process from /var/tmp has only weak signals and no CPU: the device's share
    against the table's own `suspect_busy_cores` decides."""
    table, _ = make_table(tmp_path, [RENAMED, IDLE], Clock(), settings={"suspect_busy_cores": busy_cores})
    assert not table.scan().by_pid()[300].suspect
    table.add_busy_source(Shares({300: share, 400: 1.0}))
    snap = table.scan().by_pid()
    assert snap[300].suspect is suspect
    assert not snap[400].suspect  # busy on the device, but no signal at all


def test_collectors_wire_their_sources_into_the_table_once(tmp_path):
    """build_context makes the table; the network and antivirus collectors add their signal
    sources and the gpu collector its busy source, each exactly once, to that very table."""
    from minerwatch.app import Options, build_collectors, build_context, close_collectors

    config = tmp_path / "minerwatch.yml"
    config.write_text("network:\n  sniffer: off\n")
    context = build_context(Options(config_file=str(config)))
    collectors = {c.name: c for c in build_collectors(context, ["network", "antivirus", "gpu", "process"])}
    try:
        table = context.processes
        assert table.signal_sources == (collectors["network"].monitor, collectors["antivirus"].watcher)
        assert table.busy_sources == (collectors["gpu"],)
        assert table.settings is context.config.process  # one settings object, flags applied
    finally:
        close_collectors(collectors.values())


def test_a_source_that_fails_to_refresh_does_not_blind_the_scan(tmp_path):
    class Broken(PoolDirs):
        def refresh(self):
            raise OSError("listdir failed")

    table, _ = make_table(tmp_path, [RENAMED, IDLE], Clock(), signal_sources=[Broken()])
    assert set(table.scan().by_pid()) >= {300}
