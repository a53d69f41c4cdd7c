"""Progress reporting without printing from the library.

Long library operations (decoding an image folder, downloading a file) report progress through :func:`progress`,
which does nothing unless the caller has installed a way to show it with :func:`show_progress`. The CLI installs
tqdm bars; a notebook or a script may install its own, or nothing. The setting lives in a ``ContextVar`` and is reset
when the ``with`` block ends, also after an error, so nothing is left behind.

    >>> with show_progress(tqdm_bars):        # the CLI does this around every command
    ...     get_dataset("cifar10", "train")   # decoding 50000 images: a bar on the terminal
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any, Protocol


class Bar(Protocol):
    def update(self, n: int) -> Any: ...


class _Silent:
    def update(self, n: int) -> None:
        pass


BarFactory = Callable[..., contextlib.AbstractContextManager[Bar]]
_FACTORY: ContextVar[BarFactory | None] = ContextVar("milestones_progress", default=None)


@contextlib.contextmanager
def show_progress(factory: BarFactory | None) -> Iterator[None]:
    """While active, :func:`progress` opens bars with ``factory(total=..., desc=..., unit=..., **options)``."""
    token = _FACTORY.set(factory)
    try:
        yield
    finally:
        _FACTORY.reset(token)


@contextlib.contextmanager
def progress(*, total: int | None, desc: str, unit: str, **options: Any) -> Iterator[Bar]:
    """A bar to ``update(n)``: the installed factory's, else a silent one."""
    factory = _FACTORY.get()
    if factory is None:
        yield _Silent()
        return
    with factory(total=total, desc=desc, unit=unit, **options) as bar:
        yield bar


def tqdm_bars(**options: Any) -> contextlib.AbstractContextManager[Bar]:
    """tqdm on stderr, shown only on a terminal (``disable=None``), cleared when done."""
    from tqdm.auto import tqdm

    return tqdm(disable=None, leave=False, mininterval=0.5, dynamic_ncols=True, **options)
