"""Ctrl-C for the command line: one line on stderr, exit status 130, and a rerun that resumes.

* :func:`sigint_once` makes the first SIGINT raise ``KeyboardInterrupt`` (as Python's default handler does)
  and ignores further ones, so that the unwinding it starts (atomic writes removing their temporaries,
  Optuna marking the running trial failed) is never cut short by a second Ctrl-C.
* :func:`deferred` holds SIGINT back while code that must not stop half-way runs (Optuna's bookkeeping and
  storage writes), except inside nested :func:`allowed` parts (training, evaluation, waiting).
* :func:`invoke` runs a click command like ``command.main(standalone_mode=False)`` but lets
  ``KeyboardInterrupt`` through as it is (click would print a blank line and raise ``Abort``).
* :func:`run_command` runs a click command with all of it (and user errors as one line, exit status 2).
* :func:`exit_interrupted` prints :data:`MESSAGE` and exits with status 130; from a process entry point it
  exits at once (``os._exit``) after flushing, so that no thread, atexit hook or library can add a traceback
  or keep the process alive.
* :func:`quiet_optuna_interrupts` keeps Optuna from logging "Trial N failed ... KeyboardInterrupt" with a
  traceback when Ctrl-C lands inside a trial (Optuna still records the trial as failed, then re-raises).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import Any, NoReturn

MESSAGE = "interrupted: rerun the same command to resume"
EXIT_STATUS = 130  # 128 + SIGINT, as shells report it


class _State:
    installed = False  # our handler is the SIGINT handler
    fired = False  # a KeyboardInterrupt was raised: later SIGINTs are ignored
    pending = False  # a SIGINT arrived where it is deferred
    blocks: list[bool] = []  # open deferred() (False) and allowed() (True) blocks, innermost last


def _deferring() -> bool:
    return bool(_State.blocks) and not _State.blocks[-1]


def _handler(signum: int, frame: Any) -> None:
    if _State.fired:
        return
    if _deferring():
        _State.pending = True
        return
    _State.fired = True
    raise KeyboardInterrupt


def _raise_pending() -> None:
    if _State.pending and not _State.fired and not _deferring():
        _State.pending = False
        _State.fired = True
        raise KeyboardInterrupt


@contextlib.contextmanager
def _installed() -> Iterator[bool]:
    """Our handler for the block (main thread, SIGINT not ignored); yields whether it is in place."""
    if _State.installed:
        yield True
        return
    if threading.current_thread() is not threading.main_thread():
        yield False
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.SIG_IGN:  # started with SIGINT ignored (nohup, `cmd &`): keep it so
        yield False
        return
    signal.signal(signal.SIGINT, _handler)
    _State.installed, _State.fired, _State.pending = True, False, False
    try:
        yield True
    finally:
        _State.installed = False
        signal.signal(signal.SIGINT, previous if previous is not None else signal.SIG_DFL)


@contextlib.contextmanager
def sigint_once() -> Iterator[None]:
    """Within the block the first SIGINT raises KeyboardInterrupt and later ones are ignored."""
    with _installed():
        yield


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """SIGINT inside the block is held back until the block ends, except within nested :func:`allowed` blocks.

    For code that must not stop half-way, such as Optuna's bookkeeping around a trial and its storage (an
    interrupt inside a journal file's lock makes Optuna raise another error; one inside ``study.tell`` leaves
    it with an UnboundLocalError). Blocks nest: the innermost ``deferred``/``allowed`` decides.
    """
    with _installed() as ours:
        if not ours:
            yield
            return
        _State.blocks.append(False)
        try:
            yield
        finally:
            _State.blocks.pop()
        _raise_pending()


@contextlib.contextmanager
def allowed() -> Iterator[None]:
    """Within a :func:`deferred` block, let SIGINT raise here (one held back is raised on entry)."""
    _State.blocks.append(True)
    try:
        _raise_pending()
        yield
    finally:
        _State.blocks.pop()


def invoke(command: Any, argv: Sequence[str] | None, prog_name: str) -> Any:
    """Run the click ``command`` on ``argv`` (default ``sys.argv[1:]``) without click's Ctrl-C handling."""
    args = list(sys.argv[1:] if argv is None else argv)
    complete_var = "_" + re.sub(r"\W", "_", prog_name).upper() + "_COMPLETE"  # click's own name for it
    if complete_var in os.environ:  # shell completion: click's own path (it exits)
        return command.main(args=args, prog_name=prog_name, complete_var=complete_var)
    try:
        with command.make_context(prog_name, args) as ctx:
            return command.invoke(ctx)
    except BrokenPipeError:  # the reader of stdout went away (`| head`): exit quietly, as click does
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)


def run_command(command: Any, argv: Sequence[str] | None, prog_name: str) -> None:
    """Run a click command with the command line's conventions: a user error is one line ``error: ...`` on
    stderr and exit status 2, Ctrl-C is :data:`MESSAGE` and exit status 130, neither with a traceback."""
    import click

    from .errors import TensorSlimError

    with sigint_once():
        try:
            invoke(command, argv, prog_name)
            return
        except TensorSlimError as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(2)
        except (KeyboardInterrupt, click.exceptions.Abort):
            pass  # reported below, once the interrupted command's frames are released
        except click.ClickException as err:
            err.show()
            sys.exit(err.exit_code)
        except click.exceptions.Exit as err:
            sys.exit(err.exit_code)
        exit_interrupted(hard=argv is None)


def exit_interrupted(*, hard: bool) -> NoReturn:
    """Print the one interrupt line and exit with status 130 (``hard``: at once, as a process entry point)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    err = sys.stderr
    with contextlib.suppress(Exception):
        tty = err.isatty()
        # on a terminal the line replaces the "^C" echo (and any progress bar) instead of following it
        err.write(("\r\x1b[K" if tty else "") + MESSAGE + "\n")
        err.flush()
    if hard:
        gc.collect()  # release what the interrupted command held (DataLoader workers shut down in __del__)
        os._exit(EXIT_STATUS)
    raise SystemExit(EXIT_STATUS)


class _DropInterruptedTrials(logging.Filter):
    """Optuna logs a trial stopped by KeyboardInterrupt twice ("failed with parameters ... because of the
    following error: KeyboardInterrupt()" with its traceback, then "failed with value None"): drop both."""

    _FIRST = re.compile(r"Trial (\d+) failed with parameters: .*because of the following error: KeyboardInterrupt\(",
                        re.S)
    _SECOND = re.compile(r"Trial (\d+) failed with value ")

    def __init__(self) -> None:
        super().__init__()
        self.trials: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        msg = str(record.msg)
        exc = record.exc_info[1] if record.exc_info else None
        if (m := self._FIRST.match(msg)) or isinstance(exc, KeyboardInterrupt):
            if m:
                self.trials.add(m[1])
            return False
        m = self._SECOND.match(msg)
        return not (m and m[1] in self.trials)


_FILTER = _DropInterruptedTrials()


def quiet_optuna_interrupts() -> None:
    """Drop Optuna's "trial failed" log records caused by KeyboardInterrupt (idempotent)."""
    for name in ("optuna", "optuna.study._optimize", "optuna.study.study"):
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
