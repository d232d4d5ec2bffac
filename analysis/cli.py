"""What every command of the project shares at its top level (the game scripts, the sweep, the
analysis commands): a failure is one line on stderr, never a traceback, with an exit code a batch
scheduler can act on.

    exit 2    bad input (ValueError: a flag, a file, a run directory), found before work where possible
    exit 1    a fault while working (disk full, out of memory, a diverged run)
    exit 130  Ctrl-C (the message says where the run stopped and how to continue it)

This lives in `analysis` (numpy-only, the bottom of the import order) so that every command,
torch-free ones included, reports errors the same way.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import signal
import sys
import threading
from typing import Callable, Iterator, NoReturn

BAD_INPUT, FAULT, INTERRUPTED = 2, 1, 130
MAX_MESSAGE = 400  # characters of one error line: huge values are cut, never echoed whole


def one_line(error: BaseException | str) -> str:
    """The first line of an error's message, control characters escaped, at most MAX_MESSAGE long."""
    text = str(error).strip()
    if not text and isinstance(error, BaseException):
        text = type(error).__name__
    text = text.splitlines()[0] if text else ""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


def os_error_line(error: OSError) -> str:
    """An OSError as 'FILE: what went wrong' (ENOSPC/EDQUOT: 'the disk is full')."""
    if error.filename is None:
        return one_line(error.strerror or error)
    what = "the disk is full" if error.errno in (errno.ENOSPC, errno.EDQUOT) else error.strerror
    return one_line(f"{error.filename}: {what}")


def run_command(body: Callable[[], int | None], prog: str | None = None) -> int:
    """Run a command's body and return its exit code; every failure becomes one stderr line."""
    prefix = f"{prog}: " if prog else ""
    try:
        code = body()
    except KeyboardInterrupt as interrupt:
        print(f"{prefix}{one_line(interrupt) or 'interrupted'}", file=sys.stderr)
        return INTERRUPTED
    except ValueError as error:
        print(f"{prefix}error: {one_line(error)}", file=sys.stderr)
        return BAD_INPUT
    except MemoryError:
        print(f"{prefix}failed: out of memory; reduce the sizes (batch, hidden, vocabulary, objects)",
              file=sys.stderr)
        return FAULT
    except OSError as error:
        print(f"{prefix}failed: {os_error_line(error)}", file=sys.stderr)
        return FAULT
    return 0 if code is None else int(code)


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors are one line (`prog: error: ...`) with exit code 2, no usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(BAD_INPUT, f"{self.prog}: error: {one_line(message)}\n")


@contextlib.contextmanager
def sigint_held() -> Iterator[list[int]]:
    """Ctrl-C inside the block is noted in the yielded list instead of raised, for steps that must
    not be cut in the middle; the caller acts on it when the block ends. Only where Python's own
    handler is installed in the main thread: a program that handles or ignores SIGINT itself keeps
    its way (the list then stays empty)."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield []
        return
    pending: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda number, frame: pending.append(number))
    try:
        yield pending
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def starting(module_name: str) -> Iterator[None]:
    """Around a command's heavy imports (torch takes seconds): a Ctrl-C there is the same single
    line and exit 130 as anywhere else. The signal is held until the imports end, because a
    KeyboardInterrupt inside a library's import leaves it half-loaded (numpy then refuses to load
    again, with a traceback, or the interrupt is lost). Only when the module runs as the program
    (`module_name == "__main__"`); a library import is left alone."""
    if module_name != "__main__":
        yield
        return
    with sigint_held() as pending:
        yield
    if pending:
        print("interrupted while starting; nothing was written", file=sys.stderr)
        raise SystemExit(INTERRUPTED)
