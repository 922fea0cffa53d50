"""Stand-ins for what this machine lacks, shaped like the real modules: NVML (`nvml`), Windows'
`winreg` (`winreg`) and pywin32 (`win32`). Everything else the tests use is real."""
