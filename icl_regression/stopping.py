"""Stopping a long command cleanly: a wall-clock deadline (`--stop_after=25m`) and SIGINT / SIGTERM.

Signals only set a flag; the engine reads it between compiled calls, checkpoints every member of its group and
returns, and the sweep then stops before the next group. Nothing is ever raised from a signal handler, because an
exception that lands inside tracing, compilation or XLA work can crash the process (a KeyboardInterrupt during a
group's setup ended in a segmentation fault) and leave files half-written. A second Ctrl-C (or SIGTERM) ends the
process at once: its finished cells are safe on disk, and an interrupted cell resumes from its last checkpoint.

No jax here: the command-line entry points install the handlers before they import it.
"""

from __future__ import annotations

import math
import os
import re
import signal
import sys
import time
from typing import Callable

from icl_regression.config import ConfigError

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([smh]?)\s*$")


def parse_duration(text: str, flag: str = "--stop_after") -> float:
    """'90s', '25m', '1.5h' (or a plain number of seconds) → seconds."""
    match = _DURATION.match(str(text))
    seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"] if match else math.nan
    if not (match and seconds > 0 and math.isfinite(seconds)):
        raise ConfigError(f"{flag}={text!r} is not a duration; allowed: a positive number with unit s, m or h, "
                          "e.g. 90s, 25m, 1.5h")
    return seconds


def format_duration(seconds: float) -> str:
    """A short human duration: '42 s', '6.5 min', '2 h 05 min'."""
    if not math.isfinite(seconds):
        return "?"
    if seconds < 100:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes:02d} min"


class Stop:
    """Whether a long command should stop now, and why: a deadline passed or a signal arrived."""

    def __init__(self, seconds: float | None = None, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._deadline = None if seconds is None else clock() + seconds
        self._seconds = seconds
        self._requested: str | None = None

    def set_deadline(self, seconds: float) -> None:
        """Stop `seconds` from now (the entry points parse --stop_after after the handlers are in place)."""
        self._seconds, self._deadline = seconds, self._clock() + seconds

    def request(self, reason: str) -> None:
        """Asks the loop to stop at its next check (what the signal handlers call)."""
        if self._requested is None:
            self._requested = reason

    @property
    def reason(self) -> str | None:
        """None while the command may go on; otherwise why it stops (e.g. 'deadline --stop_after=25.0 min')."""
        if self._requested is None and self._deadline is not None and self._clock() >= self._deadline:
            self._requested = f"deadline --stop_after={format_duration(self._seconds)}"
        return self._requested

    def __bool__(self) -> bool:
        return self.reason is not None


def install_signal_handlers(stop: Stop, print_fn: Callable[[str], None] | None = None) -> None:
    """SIGINT and SIGTERM ask `stop` to stop after the compiled call in flight; a second one exits at once."""
    print_fn = print_fn or (lambda text: print(text, file=sys.stderr, flush=True))

    received = []

    def handler(signum, _frame):
        name = signal.Signals(signum).name
        received.append(name)
        if len(received) > 1:
            print_fn(f"{name} again: stopping now without a checkpoint; finished cells are safe, interrupted ones "
                     "resume from their last checkpoint")
            os._exit(128 + signum)
        stop.request(f"signal {name}")
        print_fn(f"{name}: stopping after the compiled call in flight and writing checkpoints "
                 "(send it again to stop at once)")

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, handler)
