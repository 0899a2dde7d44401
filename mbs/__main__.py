"""`python -m mbs` is the `mbs` command."""

from mbs.cli import main

main()
