"""Allows `python -m minerwatch`."""

from minerwatch.cli import main

main()
