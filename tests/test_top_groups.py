"""The top-K processes that are not suspect are exported by (name, user) group: a counter that
never goes down while processes of the group exit and start, no pid label, groups that end
after resting out of the top, allowlisted processes kept in a group of their own."""

import subprocess
import sys
import time

import yaml

from minerwatch.detection.allowlist import Allowlist, AllowRule
from minerwatch.host.proc_reader import ProcfsReader
from minerwatch.detection.process_table import ProcessSettings, ProcessTable
from minerwatch.detection.signatures import Signatures
from minerwatch.detection.top_groups import TopGroups
from support.exporter import Exporter, find
from support.processes import stop_pid, wait_for
from support.promtool import check_metrics

NAME = "mwtopburn"  # a busy process with no miner signal (comm set, no miner argument)


def burner(name: str = NAME) -> subprocess.Popen:
    """A real busy process under `name` (its comm), nothing suspect about it."""
    code = f"open('/proc/self/comm', 'w').write({name!r})\nwhile True: pass"
    proc = subprocess.Popen([sys.executable, "-c", code])

    def renamed():  # the table classifies a process once, when it first sees it: not as python3
        with open(f"/proc/{proc.pid}/comm") as comm:
            return comm.read().strip() == name
    wait_for(renamed, timeout=10, interval=0.01, what=f"the burner to call itself {name}")
    return proc


class Clock:
    def __init__(self):
        self.now = 5000.0

    def __call__(self):
        return self.now


def group_samples(samples, metric):
    return find(samples, metric, name=NAME, allowlisted="false")


def test_group_counter_survives_a_member_exiting_and_another_starting(tmp_path, promtool):
    config = tmp_path / "minerwatch.yml"
    # a loaded machine shares its cores: a low floor keeps the burner in the top
    config.write_text(yaml.safe_dump({"process": {"top_min_cpu_cores": 0.02},
                                      "network": {"resolve_max_names": 0}}))
    first = burner()
    second = None
    exporter = Exporter([f"--config.file={config}", "--collector.process.top-k=20"])
    try:
        values = []

        def counted(pid):
            def check():
                samples = exporter.scrape()
                cpu = group_samples(samples, "minerwatch_process_top_cpu_seconds_total")
                members = group_samples(samples, "minerwatch_process_top_processes")
                if cpu:
                    values.append(cpu[0][1])
                    # the pid never becomes a label of a non-suspect process
                    assert not find(samples, "minerwatch_process_cpu_seconds_total", pid=pid)
                return samples if cpu and members and members[0][1] >= 1 and values[-1] > 0 else None
            return check

        wait_for(counted(first.pid), timeout=30, interval=1.1, what="the burner's group to count CPU")
        wait_for(lambda: counted(first.pid)() and values[-1] > values[0] + 0.2, timeout=20, interval=1.1,
                 what="the group's counter to grow")
        stop_pid(first)
        at_exit = values[-1]
        second = burner()
        wait_for(lambda: counted(second.pid)() and values[-1] > at_exit + 0.2, timeout=30, interval=1.1,
                 what="the second burner to add to the same group's counter")
        text = exporter.text()
    finally:
        stop_pid(first)
        if second is not None:
            stop_pid(second)
        exporter.stop()
    assert values == sorted(values), f"the group counter went down: {values}"
    assert f'minerwatch_process_top_cpu_seconds_total{{allowlisted="false",name="{NAME}"' in text
    check_metrics(promtool, text)


def real_table(**settings) -> ProcessTable:
    allowlist = Allowlist([AllowRule(name="mwtopok")])
    return ProcessTable(ProcfsReader("/proc"), Signatures(), allowlist=allowlist,
                        settings=ProcessSettings(top_k=100, top_min_cpu_cores=0.0, busy_probe_interval_seconds=0,
                                                 **settings))


def groups_now(table, groups, prefix="") -> dict:
    """One scan of the real /proc; `prefix` keeps only this test's burners (the machine's other
    busy processes would compete for the groups)."""
    snapshot = table.scan()
    views = (v for v in snapshot.top if not v.suspect and v.name.startswith(prefix))
    return {(g.name, g.allowlisted): g for g in groups.update(views)}


def test_group_resting_longer_than_the_expiry_ends_and_returns_from_zero():
    clock = Clock()
    table = real_table()
    groups = TopGroups(max_groups=200, expiry_seconds=900, clock=clock)
    proc = burner()
    try:
        wait_for(lambda: groups_now(table, groups).get((NAME, False)) is not None
                 and groups_now(table, groups)[(NAME, False)].cpu_seconds > 0.05,
                 timeout=20, interval=0.3, what="the burner's group to count CPU")
    finally:
        stop_pid(proc)
    counted = groups_now(table, groups)[(NAME, False)]
    assert counted.members == 0  # it exited: resting, its counter kept as it was
    kept = counted.cpu_seconds
    clock.now += 899
    assert groups_now(table, groups)[(NAME, False)].cpu_seconds == kept
    clock.now += 2
    assert (NAME, False) not in groups_now(table, groups)  # its series ends

    again = burner()
    try:
        wait_for(lambda: (NAME, False) in groups_now(table, groups), timeout=20, interval=0.3,
                 what="the burner back in the top")
        assert groups_now(table, groups)[(NAME, False)].cpu_seconds < kept  # a new counter from 0
    finally:
        stop_pid(again)


def test_allowlisted_processes_have_a_group_of_their_own():
    table = real_table()
    groups = TopGroups(max_groups=200)
    plain, allowed = burner(), burner("mwtopok")
    try:
        wait_for(lambda: {(NAME, False), ("mwtopok", True)} <= set(groups_now(table, groups)), timeout=20,
                 interval=0.3, what="both burners in the top")
    finally:
        stop_pid(plain)
        stop_pid(allowed)


def test_groups_are_capped_and_the_longest_resting_goes_first():
    clock = Clock()
    table = real_table()
    groups = TopGroups(max_groups=2, clock=clock)
    names = ["mwtopa", "mwtopb", "mwtopc"]
    procs = []
    try:
        for name in names:
            procs.append(burner(name))
            wait_for(lambda: (name, False) in groups_now(table, groups, "mwtop"), timeout=20, interval=0.3,
                     what=f"{name} in the top")
            stop_pid(procs[-1])
            clock.now += 10
        present = {n for n, _ in groups_now(table, groups, "mwtop")}
        assert present == {"mwtopb", "mwtopc"}  # mwtopa rested longest: dropped for mwtopc
    finally:
        for proc in procs:
            stop_pid(proc)
