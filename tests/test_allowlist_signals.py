"""The allowlist per signal (tamper): an entry pins the program and says which signals
it explains; identity and pool signals are never explained; a name alone is a start-up error."""

import textwrap

import pytest

from minerwatch import config
from minerwatch.detection.allowlist import EXPLAINABLE_SIGNALS, Allowlist, AllowRule
from minerwatch.detection.process_table import ProcessTable
from minerwatch.detection.signatures import Match, Signatures
from minerwatch.host.proc_reader import ProcfsReader
from support.procfs import TICKS, FakeProcess, build

# A busy (0.9 cores since its start) backup agent run from a temp folder: the weak signal
# exe_in_temp_dir, and busy CPU.
AGENT = FakeProcess(700, "agent", ["/tmp/vendor/agent", "--full"], exe="/tmp/vendor/agent",
                    utime=900 * TICKS, start_ticks=9000 * TICKS)
IDLE_AGENT = FakeProcess(701, "agent", ["/tmp/vendor/agent"], exe="/tmp/vendor/agent",
                         start_ticks=9000 * TICKS)


def scan(tmp_path, processes, rules, sources=()):
    reader = ProcfsReader(str(build(tmp_path, processes)))
    table = ProcessTable(reader, Signatures(), Allowlist(rules), signal_sources=sources,
                         wall_clock=lambda: reader._boot_time + 10_000)
    try:
        return table.scan().by_pid()
    finally:
        table.close()


def rule(*signals):
    return AllowRule(exe="/tmp/vendor/agent", signals=frozenset(signals))


def test_an_entry_explains_only_the_signals_it_lists(tmp_path):
    view = scan(tmp_path, [AGENT], [rule("exe_in_temp_dir", "busy_cpu")])[700]
    assert "exe_in_temp_dir" in view.signals and not view.suspect and view.allowlisted


def test_a_weak_signal_the_entry_does_not_list_stays_suspect(tmp_path):
    view = scan(tmp_path, [AGENT], [rule("busy_cpu")])[700]
    assert view.suspect and not view.allowlisted


def test_busy_cpu_not_listed_leaves_the_cpu_alerts_on(tmp_path):
    """Not suspect (its weak signal is explained), but not `allowlisted` either while busy: the
    CPU alerts, which are exempt on `allowlisted`, still apply."""
    by_pid = scan(tmp_path, [AGENT, IDLE_AGENT], [rule("exe_in_temp_dir")])
    assert not by_pid[700].suspect and not by_pid[700].allowlisted
    assert by_pid[701].allowlisted  # idle: nothing unexplained


class PoolSource:
    """The network collector's signal source, answering for one pid (a pool connection)."""

    generation = 1

    def refresh(self):
        pass

    def match(self, facts):
        return Match("pool_connection", "Stratum on the wire to 127.0.0.1:3333") if facts.pid == 700 else None


def test_a_pool_connection_is_never_explained(tmp_path):
    view = scan(tmp_path, [AGENT], [AllowRule(exe="/tmp/vendor/agent")], sources=[PoolSource()])[700]
    assert view.suspect and not view.allowlisted and "pool_connection" in view.signals


def test_an_entry_without_signals_explains_every_explainable_signal(tmp_path):
    assert AllowRule(exe="/x").signals == EXPLAINABLE_SIGNALS
    assert {"busy_cpu", "busy_gpu", "av_excluded", "exe_in_temp_dir", "miner_behaviour"} <= EXPLAINABLE_SIGNALS
    assert not {"miner_name", "pool_url", "pool_connection", "miner_exe_content", "miner_config"} & EXPLAINABLE_SIGNALS
    view = scan(tmp_path, [AGENT], [AllowRule(exe="/tmp/vendor/*")])[700]
    assert not view.suspect and view.allowlisted


def write(tmp_path, text):
    path = tmp_path / "minerwatch.yml"
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_signals_are_read_from_the_config(tmp_path):
    path = write(tmp_path, """\
        allowlist:
          - exe: /opt/backup/agent
            user: backup
            signals: [busy_cpu, av_excluded]
          - sha256: "%s"
          - exe: 'C:\\Program Files\\Encoder\\enc.exe'
            signals: [busy_gpu]
        """ % ("ab" * 32))
    first, second, third = config.load(path).allowlist
    assert first.signals == {"busy_cpu", "av_excluded"} and first.where == f"{path}:2"
    assert second.signals == EXPLAINABLE_SIGNALS
    assert third.exe == "C:\\Program Files\\Encoder\\enc.exe" and third.signals == {"busy_gpu"}


PIN = ("an allowlist entry must pin the program with `exe` (an absolute path) or `sha256`: "
       "a name or a user alone can be taken by any process")


@pytest.mark.parametrize("text, message", [
    ("allowlist:\n  - name: restic\n", "{f}:2: allowlist[0]: " + PIN),
    ("allowlist:\n  - exe: /opt/a\n  - {name: restic, user: backup}\n", "{f}:3: allowlist[1]: " + PIN),
    ("allowlist:\n  - {}\n", "{f}:2: allowlist[0]: " + PIN),
    ("allowlist:\n  - exe: /opt/a\n    signals: [busy_cpu, pool_connection]\n",
     "{f}:3: allowlist[0].signals[1]: pool_connection is never allowlisted: a known-good program does not "
     "identify itself as a miner or talk to a pool (remove it; such a process pages whatever the allowlist says)"),
    ("allowlist:\n  - exe: /opt/a\n    signals:\n      - miner_cmdline\n",
     "{f}:4: allowlist[0].signals[0]: miner_cmdline is never allowlisted: a known-good program does not "
     "identify itself as a miner or talk to a pool (remove it; such a process pages whatever the allowlist says)"),
    ("allowlist:\n  - exe: /opt/a\n    signals: [busy]\n",
     "{f}:3: allowlist[0].signals[0]: unknown signal (known: " + ", ".join(sorted(EXPLAINABLE_SIGNALS)) + ")"),
    ("allowlist:\n  - exe: /opt/a\n    signals: []\n",
     "{f}:3: allowlist[0].signals: must list at least one signal the program explains"),
    ("allowlist:\n  - exe: /opt/a\n    signals: busy_cpu\n", "{f}:3: allowlist[0].signals: must be a list"),
    ("allowlist:\n  - exe: agent.exe\n",
     "{f}:2: allowlist[0].exe: must be an absolute path that does not start with a wildcard"),
    ("allowlist:\n  - exe: '/*'\n",
     "{f}:2: allowlist[0].exe: must be an absolute path that does not start with a wildcard"),
    ("allowlist:\n  - exe: '*\\agent.exe'\n",
     "{f}:2: allowlist[0].exe: must be an absolute path that does not start with a wildcard"),
])
def test_bad_entries_name_file_and_line(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(config.ConfigError) as err:
        config.load(path)
    assert str(err.value) == message.replace("{f}", path)
