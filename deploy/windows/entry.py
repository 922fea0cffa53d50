"""The frozen program's entry (PyInstaller builds minerwatch.exe from this file).

`minerwatch.exe service FLAGS...` is what the service manager starts: it hands the process to
the service control dispatcher. Anything else is the ordinary command line (`serve`, `scan`).
"""

import sys


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "service":
        from minerwatch.windows.service import main as service_main

        service_main(sys.argv[2:])
        return
    from minerwatch.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
