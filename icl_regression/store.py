"""The results store: one folder per run, JSON files written atomically, metrics appended as they come.

A run folder holds `config.json`, `metrics.jsonl` (one line per evaluation), `summary.json` (when finished),
`checkpoints/` and, while a process trains it, a `RUNNING` heartbeat. Nothing here imports jax: analysis and
figures read the store without it.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

from icl_regression import names
from icl_regression.config import same_run_config


class StoreError(RuntimeError):
    """The results store is missing or inconsistent; the message names the path."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Writes `data` to `path` so that readers see the old file or the new one, never a partial one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True) + "\n")


def read_json(path: Path) -> Any:
    with open(path) as f:
        return json.load(f)


class RunStore:
    """The folder of one run."""

    def __init__(self, run_dir: Path):
        self.dir = Path(run_dir)

    @property
    def name(self) -> str:
        return self.dir.name

    @property
    def checkpoint_dir(self) -> Path:
        return self.dir / names.CHECKPOINT_DIR

    def init(self, config: dict) -> None:
        """Creates the folder with its config, or checks that an existing folder holds the same config."""
        path = self.dir / names.CONFIG_FILE
        if path.exists():
            existing = read_json(path)
            if existing != json.loads(json.dumps(config)) and not same_run_config(existing, config):
                raise StoreError(f"{self.dir} already holds a run with a different config.json; "
                                 "use another --workdir or remove that folder")
            return
        write_json(path, config)

    def config(self) -> dict:
        path = self.dir / names.CONFIG_FILE
        if not path.exists():
            raise StoreError(f"no {names.CONFIG_FILE} in {self.dir}: not a run folder")
        return read_json(path)

    def append_metrics(self, record: dict) -> None:
        """Appends one evaluation record and syncs it to disk before returning."""
        with open(self.dir / names.METRICS_FILE, "a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def metrics(self) -> list[dict]:
        """All evaluation records; a torn last line (a crash mid-append) is ignored."""
        path = self.dir / names.METRICS_FILE
        if not path.exists():
            return []
        records = []
        with open(path) as f:
            for line in f:
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    break
        return records

    def truncate_metrics(self, last_step: int) -> None:
        """Drops records after `last_step` (on resume from the checkpoint at that step)."""
        records = self.metrics()
        kept = [r for r in records if r["step"] <= last_step]
        if len(kept) != len(records) or (self.dir / names.METRICS_FILE).exists():
            atomic_write_text(self.dir / names.METRICS_FILE, "".join(json.dumps(r, sort_keys=True) + "\n"
                                                                    for r in kept))

    def write_summary(self, summary: dict) -> None:
        write_json(self.dir / names.SUMMARY_FILE, summary)

    def summary(self) -> dict | None:
        path = self.dir / names.SUMMARY_FILE
        return read_json(path) if path.exists() else None

    def mark_running(self) -> None:
        write_json(self.dir / names.HEARTBEAT_FILE, {"host": socket.gethostname(), "pid": os.getpid(),
                                                      "since": time.time()})

    def clear_running(self) -> None:
        (self.dir / names.HEARTBEAT_FILE).unlink(missing_ok=True)

    def state(self) -> str:
        """pending / running / done / diverged, read from the folder alone.

        A run marked running by a process of this host that no longer exists (killed) is pending again; a mark
        from another host is trusted, since its process cannot be checked from here.
        """
        summary = self.summary()
        if summary is not None:
            return summary["status"]
        heartbeat = self.dir / names.HEARTBEAT_FILE
        if heartbeat.exists() and _process_may_be_alive(read_json(heartbeat)):
            return names.RUNNING
        return names.PENDING


def _process_may_be_alive(mark: dict) -> bool:
    if mark.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(mark["pid"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, KeyError, ValueError, TypeError):
        return True
    return True


def iter_runs(root: Path) -> Iterator[RunStore]:
    """Every run folder (one with a config.json) under `root`, in name order."""
    root = Path(root)
    if not root.is_dir():
        raise StoreError(f"results folder {root} does not exist")
    for path in sorted(root.rglob(names.CONFIG_FILE)):
        yield RunStore(path.parent)
