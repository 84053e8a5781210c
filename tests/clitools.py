"""Helpers for tests that run the command-line entry points as real processes."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# Subprocesses share the tests' persistent compilation cache and import this checkout's package.
ENV = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO),
           JAX_COMPILATION_CACHE_DIR=os.environ.get("JAX_COMPILATION_CACHE_DIR", str(REPO / ".jax_cache")))

# A tiny sweep config file: 4 cells in 2 groups (batch 16 and 32), long enough to be stopped mid-training.
TINY_SWEEP_FILE = '''
from icl_regression.config import base_config


def get_config():
    config = base_config()
    config.data.dim = 2
    config.data.context_len = 4
    config.model.num_layers = 1
    config.model.d_model = 16
    config.model.num_heads = 2
    config.train.steps = {steps}
    config.train.batch_size = 16
    config.train.steps_per_call = 10
    config.train.learning_rate = 3e-3
    config.eval.interval = 20
    config.eval.num_sequences = 64
    config.eval.batch_size = 64
    config.eval.num_bootstrap = 10
    config.checkpoint.interval = {checkpoint}
    config.sweep = {{"grid": {{"data": {{"num_tasks": (2, "inf")}}, "train": {{"batch_size": (16, 32)}}}}}}
    return config
'''


def write_tiny_sweep(path: Path, steps: int = 3000, checkpoint: int = 1000) -> Path:
    path.write_text(TINY_SWEEP_FILE.format(steps=steps, checkpoint=checkpoint))
    return path


def script(name: str) -> str:
    return str(REPO / "experiments" / name)


def run(args, timeout: float = 120, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], env=env or ENV, capture_output=True, text=True, timeout=timeout,
                          cwd=REPO, **kwargs)


class Process:
    """A running entry point whose output lines can be awaited."""

    def __init__(self, args, env: dict | None = None):
        self.proc = subprocess.Popen([sys.executable, *args], env=env or ENV, cwd=REPO, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.lines: list[str] = []
        self._queue: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, text: str, timeout: float = 120, count: int = 1) -> str:
        """Waits until `count` output lines contain `text`; returns the last of them."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            matches = [line for line in self.lines if text in line]
            if len(matches) >= count:
                return matches[-1]
            try:
                line = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"process ended before printing {text!r}:\n" + "\n".join(self.lines))
            self.lines.append(line)
        self.kill()
        raise AssertionError(f"no line with {text!r} within {timeout} s:\n" + "\n".join(self.lines))

    def send(self, signum: int) -> None:
        os.kill(self.proc.pid, signum)

    def finish(self, timeout: float = 120) -> tuple[int, str]:
        """Waits for the exit; returns (exit code, the whole output)."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("process did not exit:\n" + "\n".join(self.lines))
        while True:
            line = self._queue.get(timeout=10)
            if line is None:
                break
            self.lines.append(line)
        return self.proc.returncode, "\n".join(self.lines)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
