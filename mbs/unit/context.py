"""What the kit tells a handler about the request it serves: is it a dry run (a shadow
request, `mbs-shadow: 1`) that must change nothing?"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager

_DRY_RUN: contextvars.ContextVar[bool] = contextvars.ContextVar("mbs_dry_run", default=False)


def dry_run() -> bool:
    """True while a handler serves a shadow (`mbs-shadow: 1`) request: change nothing."""
    return _DRY_RUN.get()


@contextmanager
def serving_dry_run() -> Iterator[None]:
    """Handlers called inside this block see `dry_run()` as True."""
    token = _DRY_RUN.set(True)
    try:
        yield
    finally:
        _DRY_RUN.reset(token)
