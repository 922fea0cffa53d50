"""Reading the host: processes, GPUs, CPU package energy and the files processes point at.

    proc_reader.py  processes from /proc (Linux fast path) or psutil (Windows and the rest)
    gpu_reader.py   NVIDIA GPUs through NVML, loaded only where the driver is
    rapl.py         CPU package energy from /sys/class/powercap (RAPL)
    files.py        files a process names, opened safely: regular files only, bounded reads
    digests.py      sha256 of files and short strings (CPython's own for short inputs)

Every read goes through the injectable roots (--path.procfs, --path.sysfs); nothing here decides
what a process is (detection/ does).
"""
