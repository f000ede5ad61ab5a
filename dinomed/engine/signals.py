"""Stopping cleanly: Ctrl-C (SIGINT) and SIGTERM (what ``kill``, ``timeout`` and job schedulers send) ask a loop
to save and stop after the current step; a second signal aborts at once."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["StopRequest", "Stopped", "worker_start"]


class StopRequest:
    """Set by the first SIGINT / SIGTERM while :meth:`installed`; ``signum`` says which one arrived.

    Example:
        >>> with StopRequest().installed() as stop:
        ...     while not stop.requested:
        ...         train_one_step()
    """

    def __init__(self) -> None:
        self.signum: int | None = None

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def exit_code(self) -> int:
        """The shell's code for a process ended by this signal: 130 for Ctrl-C, 143 for SIGTERM."""
        return 128 + (self.signum or signal.SIGINT)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.signum = signum

    @contextmanager
    def installed(self) -> Iterator["StopRequest"]:
        try:
            previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        except ValueError:  # not the main thread (e.g. a notebook worker): no handlers, Ctrl-C raises as usual
            yield self
            return
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


class Stopped(Exception):
    """Raised where a stop request must end work several layers up (a tuning trial inside a study).

    ``exit_code`` is the :attr:`StopRequest.exit_code` of the signal that asked.
    """

    def __init__(self, exit_code: int) -> None:
        super().__init__(f"stopped by signal (exit code {exit_code})")
        self.exit_code = exit_code


def worker_start(init: Callable[[int], object] | None, worker_id: int) -> None:
    """DataLoader worker start-up: Ctrl-C and SIGTERM are left to the main process, which saves and stops the run
    (``timeout`` and terminals signal the whole process group; a worker that died of it would end the run with a
    DataLoader traceback instead). ``init`` is the caller's own start-up (e.g. one OpenCV thread per worker)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if init is not None:
        init(worker_id)
