"""Stop signals: Ctrl-C (SIGINT) and SIGTERM stop a sweep the same way.

Inside ``stop_signals()`` the first SIGINT or SIGTERM raises ``Interrupted`` (a ``KeyboardInterrupt``
that knows its signal) in the main thread; later ones are ignored while the stop is handled, so a
repeated Ctrl-C, or the signal the main process passes on to a worker that got one already, cannot
cut the bookkeeping short. Inside ``deferred_signals()`` the exception waits until the block ends
(claiming a trial, recording one, writing the report). A signal that was ignored when the block
started (a background job's SIGINT) stays ignored.

How this meets Lightning (2.6): while ``trainer.fit``/``test`` runs, Lightning's signal connector
replaces the SIGTERM handler with one that notes the signal and then calls the handler it replaced
(ours, which raises ``Interrupted``); Lightning's ``_call_and_handle_interrupt`` then treats it as
Ctrl-C: it ignores SIGINT, tears the run down, restores the handlers and calls ``sys.exit(1)``. The
worker reads that ``SystemExit`` as the stop (``received_signal()`` says which) and calls
``reinstall()``. Without a handler of ours, Lightning would only stop after the current batch with
its own ``SIGTERMException``, and outside fit/test SIGTERM would kill the process on the spot.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def signal_name(signum: int) -> str:
    return "Ctrl-C (SIGINT)" if signum == signal.SIGINT else signal.Signals(signum).name


class Interrupted(KeyboardInterrupt):
    """A stop signal turned into an exception; ``exit_code`` is the shell's 128 + signal number."""

    def __init__(self, signum: int = signal.SIGINT, message: str | None = None):
        self.signum = int(signum)
        super().__init__(message or f"stopped by {signal_name(self.signum)}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class _State:
    def __init__(self):
        self.installed: dict[int, Any] = {}   # signal -> the handler ours replaced
        self.received: int | None = None      # the first stop signal
        self.deferring = 0
        self.pending = False                  # received while deferred, not raised yet


_state = _State()


def _on_stop_signal(signum: int, frame) -> None:
    if _state.received is not None:
        return  # already stopping
    _state.received = signum
    if _state.deferring:
        _state.pending = True
        return
    raise Interrupted(signum)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def stop_signals() -> Iterator[None]:
    """SIGINT and SIGTERM raise ``Interrupted`` inside the block (main thread only; nested: no-op)."""
    if not _in_main_thread() or _state.installed:
        yield
        return
    _state.received, _state.pending, _state.deferring = None, False, 0
    for sig in STOP_SIGNALS:
        previous = signal.getsignal(sig)
        if previous is signal.SIG_IGN:
            continue
        _state.installed[sig] = previous
        signal.signal(sig, _on_stop_signal)
    try:
        yield
    finally:
        for sig, previous in _state.installed.items():
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        _state.__init__()


def reinstall() -> None:
    """Put our handlers back after code that replaced them (Lightning, after an interrupted run)."""
    if _in_main_thread():
        for sig in _state.installed:
            signal.signal(sig, _on_stop_signal)


def received_signal() -> int | None:
    """The stop signal this process received inside ``stop_signals()``, if any."""
    return _state.received


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """A stop signal that arrives in the block raises ``Interrupted`` only when the block ends."""
    _state.deferring += 1
    try:
        yield
    finally:
        _state.deferring -= 1
    if _state.deferring == 0 and _state.pending:
        _state.pending = False
        raise Interrupted(_state.received)
