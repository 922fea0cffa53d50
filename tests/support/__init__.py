"""Helpers of the test suite, one module each (fixtures stay in tests/conftest.py).

    processes            free_port, stop_pid, wait_for, Spawner (real processes under a chosen name)
    repo                 ROOT, FIXTURES, the offline config and `offline(args)`
    wallets              wallet addresses for stand-ins and fixtures
    promtool             check_metrics (`promtool check metrics` on an exposition)
    servers              Debian's Prometheus and Alertmanager, a webhook sink
    alertmanager_config  the shipped Alertmanager config rewired to one webhook
    exporter             a real `minerwatch serve` process, scraped over HTTP
    procfs               a small fake /proc tree built from Python
    golden, e2e_serve    the golden end-to-end run on tests/fixtures/e2e
    fakeminer, pool      miner and pool stand-ins (run as processes)
    netns, netclient     network namespaces and a client run inside them
    dnsserver            a DNS server on 127.0.0.0/8
    cli                  `minerwatch ARGS` run as a process (to its end, or left running)
    hostile_files        a process that swaps a file for a FIFO or grows it while minerwatch reads it
    idle_clients         idle connections held against a server; Threads and VmRSS of a process
    dnsforge             forged DNS answers sent to the host (unsolicited, mismatched, broadcast)
    hostile_prometheus   a Prometheus stand-in that answers too much, too deep, too slow or not finite
    fakes/               stand-ins for what this machine lacks: NVML, winreg, pywin32

Test modules import `from support.<module> import ...`: pytest puts tests/ on sys.path
(rootdir conftest, no __init__.py in tests/). Processes started with `python -m tests.support.X`
from the repository root find the same package.
"""
