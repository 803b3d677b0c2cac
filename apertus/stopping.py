"""SIGTERM and SIGINT stop a command that runs Dagster in-process, whatever Dagster is doing.

Dagster's in-process execution replaces the SIGINT and SIGTERM handlers while a run executes: in a
step's code a signal raises (the step and the run fail, the step's slot is freed), but between
steps, and above all while a step waits for a concurrency slot, the signal is only recorded and
never acted on. A run waiting for a slot that nobody frees would then ignore every signal but
SIGKILL.

``stoppable`` closes that gap. Python writes the number of every signal it receives to a wakeup
file descriptor, whichever handler is installed; a watcher thread reads it and makes sure the
command stops:
- after ``SWALLOWED_SECONDS``, if Dagster recorded the signal without acting on it (it waits for a
  slot), or after ``UNWIND_SECONDS`` in any case (a signal raised inside a C extension's code can be
  lost), it raises ``Stopped`` in the main thread, and again while Dagster still waits; Dagster
  unwinds as for Ctrl-C in a step: it frees the run's claims and marks the run failed;
- after ``ABANDON_SECONDS`` it gives up on unwinding: ``on_abandon`` marks the command's runs failed
  and frees their slots, the child processes are killed and the process exits with 128 + signal.
Outside Dagster our own handlers raise ``Stopped`` at once. The watcher also calls ``on_tick`` now
and then (to report who holds a slot the run waits for).
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# Sent by the watcher to the main thread to wake it from a sleep; its handler does nothing (so that
# Dagster, which handles SIGINT and SIGTERM, records no second interrupt).
WAKE_SIGNAL = signal.SIGUSR2
SWALLOWED_SECONDS = 1.0  # how long Dagster may hold a recorded signal before it is raised for it
UNWIND_SECONDS = 4.0
ABANDON_SECONDS = 10.0
FIRST_TICK_SECONDS = 3.0
TICK_SECONDS = 15.0


class Stopped(KeyboardInterrupt):
    """Raised in the main thread when the command was asked to stop by a signal."""


@dataclass
class StopState:
    signo: int | None = None  # the first stop signal received

    @property
    def exit_code(self) -> int:
        assert self.signo is not None
        return 128 + self.signo  # the shell's convention: 130 for SIGINT, 143 for SIGTERM

    @property
    def name(self) -> str:
        assert self.signo is not None
        return signal.Signals(self.signo).name


@contextmanager
def stoppable(
    signal_swallowed: Callable[[], bool],
    on_tick: Callable[[], None] | None = None,
    on_abandon: Callable[[str], None] | None = None,
) -> Iterator[StopState]:
    """Within the block, SIGINT and SIGTERM raise ``Stopped`` in the main thread (see the module).

    ``signal_swallowed`` says whether the code running now holds a signal without acting on it
    (Dagster's captured interrupt, or its wait loop), and takes it over. Must be entered from the
    main thread.
    """
    assert threading.current_thread() is threading.main_thread(), "signal handlers need the main thread"
    state = StopState()

    def handler(signo: int, _frame) -> None:
        state.signo = state.signo or signo
        raise Stopped()

    previous = {signo: signal.getsignal(signo) for signo in (*STOP_SIGNALS, WAKE_SIGNAL)}
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    previous_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    for signo in STOP_SIGNALS:
        signal.signal(signo, handler)
    signal.signal(WAKE_SIGNAL, lambda _signo, _frame: None)
    done = threading.Event()
    watcher = threading.Thread(
        target=_watch,
        args=(
            reader,
            state,
            _Callbacks(signal_swallowed, on_tick, on_abandon),
            done,
            threading.main_thread().ident,
        ),
        name="apertus-stop-watcher",
        daemon=True,
    )
    watcher.start()
    try:
        yield state
    finally:
        done.set()
        watcher.join(timeout=5)
        signal.set_wakeup_fd(previous_fd)
        for signo, old in previous.items():
            signal.signal(signo, old)
        reader.close()
        writer.close()


@dataclass(frozen=True)
class _Callbacks:
    signal_swallowed: Callable[[], bool]
    on_tick: Callable[[], None] | None
    on_abandon: Callable[[str], None] | None


def _watch(reader, state: StopState, callbacks: _Callbacks, done: threading.Event, main_ident: int) -> None:
    received_at = None
    raised_at = None
    next_tick = time.monotonic() + FIRST_TICK_SECONDS
    while not done.is_set():
        ready, _, _ = select.select([reader], [], [], 0.25)
        if ready:
            for byte in reader.recv(64):
                if byte in STOP_SIGNALS and state.signo is None:
                    state.signo = byte
        now = time.monotonic()
        if state.signo is not None:
            received_at = received_at or now
            waited = now - received_at
            if raised_at is None:
                due = waited >= UNWIND_SECONDS or (
                    waited >= SWALLOWED_SECONDS and callbacks.signal_swallowed()
                )
            else:
                # Raised, yet Dagster waits again (the exception met a handler that kept going, and
                # a retry is due): raise it again there, where nothing is being cleaned up.
                due = now - raised_at >= SWALLOWED_SECONDS and callbacks.signal_swallowed()
            if due:
                raised_at = now
                _raise_in(main_ident, Stopped)
            elif waited >= ABANDON_SECONDS and not done.is_set():
                _abandon(state, callbacks.on_abandon, main_ident)
        elif callbacks.on_tick is not None and now >= next_tick:
            next_tick = now + TICK_SECONDS
            try:
                callbacks.on_tick()
            except Exception as error:  # a report that failed must not stop the run
                print(f"apertus: could not report the pools: {error}", file=sys.stderr)


def _abandon(state: StopState, on_abandon: Callable[[str], None] | None, main_ident: int) -> None:
    """The main thread did not unwind: record the stop, end the child processes, exit."""
    frame = sys._current_frames().get(main_ident)
    where = "".join(traceback.format_stack(frame, limit=8)) if frame is not None else ""
    print(
        f"apertus: stopped by {state.name}; the run did not unwind in {ABANDON_SECONDS:.0f} s, exiting. "
        f"It was at:\n{where}",
        file=sys.stderr,
    )
    try:
        if on_abandon is not None:
            on_abandon(f"stopped by {state.name}")
    finally:
        import psutil

        children = psutil.Process().children(recursive=True)
        for child in children:
            child.kill()
        psutil.wait_procs(children, timeout=5)
        sys.stderr.flush()
        os._exit(state.exit_code)


def _raise_in(thread_ident: int, exception: type[BaseException]) -> None:
    # The interpreter raises it in that thread at its next bytecode. A thread asleep in a system
    # call (Dagster sleeping before a step's retry) runs no bytecode: WAKE_SIGNAL interrupts the
    # call and runs its handler, where the exception is raised.
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_ident), ctypes.py_object(exception))
    signal.pthread_kill(thread_ident, WAKE_SIGNAL)
