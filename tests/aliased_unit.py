"""Serve a real unit under a test's own name, so its topics, consumer groups and store are
that test's alone while its handlers and the kit are exactly what `mbs run unit` runs.

    python -m tests.aliased_unit payments t1a2b3c

serves payments on `payments.charge.v2.t1a2b3c` (a second provider's topic), replies on
`mbs.replies.t1a2b3c`, and keeps state in `$MBS_UNIT_STATE_DIR/t1a2b3c.sqlite3`.
"""

from __future__ import annotations

import asyncio
import sys

from ecosystem import ECOSYSTEM
from mbs import Binding, Unit, UnitStore, implement
from mbs.settings import get_settings
from mbs.testing import configure_logging
from mbs.unit.hosting import serve_unit


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
    unit = aliased(ECOSYSTEM.load_unit(name, UnitStore.for_unit(alias, settings)), alias)
    configure_logging()
    asyncio.run(serve_unit(unit, settings))


if __name__ == "__main__":
    main(*sys.argv[1:3])
