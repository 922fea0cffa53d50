"""Deriving signals: what the host's processes are, from what was read of them.

    process_table.py  the one classification of the host's processes, shared by every collector
    signatures.py     the shipped signatures (names, command lines, wallets, pools) and matching
    names.py          executable names folded for comparison (look-alikes, disguises)
    windows_places.py Windows programs' real folders: a system name elsewhere, AppData as a drop folder
    redact.py         command lines with passwords and tokens replaced, before anything exports them
    user_regex.py     the user's command-line patterns, on RE2 (linear time)
    allowlist.py      known-good heavy programs from the config file
    busy_probe.py     the deeper look at busy processes: file content, miner config, behaviour
    exe_patterns.py   byte-pattern files for executables (shipped and the user's)
    exe_content.py    miner byte patterns and UPX in an executable, and its sha256, in one pass
    exe_worker.py     the one background thread that scans executables, off the scrape
    miner_config.py   a miner configuration file in a process's folders, home or open files
    bounded_json.py   JSON a host user wrote, parsed as a miner's lenient parser reads it, bounded
    behaviour.py      behaviour and memory shape over a window (few I/O, equal threads, RandomX)
    probe_readers.py  the behaviour samples, read from /proc on Linux and through psutil on Windows
    pool_rhythm.py    a connection's rhythm: jobs pushed unasked, client messages answered at once
    memory_shape.py   RandomX's dataset or cache resident in one mapping (smaps), librandomx mapped
    busy_groups.py    throttled processes of one user or executable that add up to busy
    tcp_flows.py      tcp_info of a process's connections (the pool session's counters)
    top_groups.py     the busiest processes grouped by name and user, without pids

Reads the host through minerwatch.host and network.sockets; the collectors expose what it finds.
"""
