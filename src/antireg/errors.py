"""What a command can end with besides its result: the errors a user can fix, and the stop by signal.

Below every other module (it imports nothing of antireg, nor torch), so that any module
can raise them and the CLI can catch them, and set up :func:`stop_on_signals`, before
any heavy import. The CLI prints the message of a :class:`ConfigError`, :class:`DataError`
or :class:`ReportError` and exits 2; a :class:`SweepError` exits 1; :class:`Interrupted`
exits 128 + the signal's number.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


class ConfigError(Exception):
    """A config problem a user can fix; the message names the key and the fix."""


class DataError(Exception):
    """A data file is missing, corrupt or unreadable, or a data option is invalid."""


class ReportError(Exception):
    """The results directory holds nothing that can be reported."""


class SweepError(Exception):
    """Some runs failed with an error (not divergence, which is a result)."""


class OutputError(SweepError):
    """An output could not be written (a full disk, a folder made read-only): the sweep
    stopped at the first failed write; the message lists what is saved and what is not."""


class Interrupted(KeyboardInterrupt):
    """The sweep was stopped by Ctrl-C (SIGINT) or SIGTERM; ``exit_code`` is 128 + the
    signal's number (130, 143), what a shell reports for a process the signal ended."""

    def __init__(self, message: str | None = None, signum: int = signal.SIGINT) -> None:
        verb = "interrupted" if signum == signal.SIGINT else "terminated"
        super().__init__(message or f"{verb} by {signal.Signals(signum).name}; finished work is saved, re-run to resume")
        self.signum, self.exit_code = signum, 128 + signum


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Turn the first SIGINT or SIGTERM into :class:`Interrupted`, and ignore any later
    one: a second Ctrl-C while the sweep stops must not cut its clean-up short (leaving
    workers behind) or print a traceback. The old handlers come back when the block
    ends, unless a signal arrived: then they stay ignored, for the process is stopping."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired = []

    def handler(signum: int, frame: object) -> None:
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        fired.append(signum)
        raise Interrupted(signum=signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        if not fired:
            for sig, old in previous.items():
                signal.signal(sig, old)
