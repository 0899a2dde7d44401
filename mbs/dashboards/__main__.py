"""`python -m mbs.dashboards DIRECTORY` writes the generated Prometheus and Grafana files under
DIRECTORY (the checkout keeps them in deploy/); `--check` only compares. The directory is
never implied: a stray run from another folder, or a mistyped option, must not overwrite a
checkout's deploy/ or create a folder named after the option."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from mbs.dashboards import rendered, write_all


def parser() -> argparse.ArgumentParser:
    found = argparse.ArgumentParser(
        prog="python -m mbs.dashboards",
        description="Generate deploy/prometheus and deploy/grafana from the contracts.",
        epilog="In a checkout: python -m mbs.dashboards deploy",
    )
    found.add_argument(
        "directory",
        type=Path,
        help="where to write (prometheus/ and grafana/ go under it); the checkout's: deploy",
    )
    found.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 listing each file that differs from a fresh generation",
    )
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """Exit 0 when written (or, with --check, up to date), 1 when --check finds a difference,
    2 on a usage error (argparse's own)."""
    args = parser().parse_args(argv)
    directory: Path = args.directory
    if args.check:
        stale = [
            relative
            for relative, text in rendered().items()
            if not (directory / relative).is_file() or (directory / relative).read_text() != text
        ]
        for relative in stale:
            print(f"differs: {directory / relative}", file=sys.stderr)
        return 1 if stale else 0
    for path in write_all(directory):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
