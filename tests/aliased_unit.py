"""Serve a real unit under a test's own name, so its topics, consumer groups and store are
that test's alone while its handlers and the kit are exactly what `mbs run unit` runs.

    python -m tests.aliased_unit payments t1a2b3c

serves payments on `payments.charge.v2.t1a2b3c` (a second provider's topic), replies on
`mbs.replies.t1a2b3c`, and keeps state in `$MBS_UNIT_STATE_DIR/t1a2b3c.sqlite3`.
"""

from __future__ import annotations

import asyncio
import sys

from mbs.cli import _logging
from mbs.contract import implement
from mbs.runner import load_unit, serve_unit
from mbs.settings import get_settings
from mbs.state import UnitStore
from mbs.unit import Binding, Unit


def aliased(unit: Unit, alias: str) -> Unit:
    """The same handlers and store under another unit name (so: other topics and groups)."""
    bindings = [
        Binding(
            implement(
                binding.contract.model_copy(update={"unit": alias}),
                request=binding.contract.request_model,
                reply=binding.contract.reply_model,
            ),
            binding.handler,
        )
        for binding in unit.bindings
    ]
    return Unit(alias, bindings, retry=unit.retry, store=unit.store)


def main(name: str, alias: str) -> None:
    settings = get_settings()
    unit = aliased(load_unit(name, UnitStore.for_unit(alias, settings)), alias)
    _logging()
    asyncio.run(serve_unit(unit, settings))


if __name__ == "__main__":
    main(*sys.argv[1:3])
