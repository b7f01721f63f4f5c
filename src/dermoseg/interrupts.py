"""Sections that Ctrl-C (SIGINT) and SIGTERM do not cut in two: a batch appends an image's row to every table of
its run as one step, so that after an interruption each finished image has its row in all of them, and an image
whose row was written keeps its output files.

The command line's signal handler (:func:`dermoseg.cli.main`) asks :func:`hold` before it raises: inside a
:func:`deferred` section the exception is kept and raised when the section ends (on the thread that entered it,
the main thread, where Python runs signal handlers). Outside the command line (an API caller's own Ctrl-C) nothing
is deferred.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Iterator

_depth = 0  # nesting of deferred() sections on the main thread
_pending: BaseException | type[BaseException] | None = None


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Run the body with interruptions held (:func:`hold`); a held one is raised when the outermost section ends.

    Raises
    ------
    KeyboardInterrupt (or the handler's subclass of it)
        At the end of the section, if an interruption arrived during it."""
    global _depth, _pending
    if threading.current_thread() is not threading.main_thread():  # signal handlers only run on the main thread
        yield
        return
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0 and _pending is not None:
            pending, _pending = _pending, None
            raise pending


def hold(exc: BaseException | type[BaseException]) -> bool:
    """Called by a signal handler with the exception it would raise: True (and the exception kept for the end of
    the section) inside a :func:`deferred` section, False outside one (the handler raises it now)."""
    global _pending
    if _depth == 0:
        return False
    if _pending is None:
        _pending = exc
    return True
