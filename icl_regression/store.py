"""The results store: one folder per run, JSON files written atomically, metrics appended as they come.

A run folder holds `config.json`, `metrics.jsonl` (one line per evaluation; a finished run's may be compressed to
`metrics.jsonl.gz` for committing, read the same way and expanded again before any write), `summary.json` (when
finished), `checkpoints/`, `divergence.json` (if it diverged) and, while a process trains it, a `RUNNING` mark naming that
process. A process trains a run only while it holds the run's claim: an exclusive `flock` on its `LOCK` file,
which the kernel drops when the process dies, so a claim left by a killed process is free again at once and two
live processes never write one folder. Nothing here imports jax: analysis and figures read the store without it.
"""

from __future__ import annotations

import fcntl
import gzip
import json
import os
import socket
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any, Iterable, Iterator

from icl_regression import names
from icl_regression.config import same_run_config


class StoreError(RuntimeError):
    """The results store is missing or inconsistent; the message names the path."""


def results_folder(path: Path, what: str = "results folder") -> Path:
    """`path` as a Path if it is a folder; a StoreError naming it if it does not exist or is something else."""
    path = Path(path)
    if not path.is_dir():
        raise StoreError(f"{what} {path} is not a folder (a regular file)" if path.exists()
                         else f"{what} {path} does not exist")
    return path


def analysis_folder(workdir: Path) -> Path:
    """`<workdir>/analysis`, where analyses of a sweep are stored (it may not exist yet); a StoreError naming it if
    the results folder is missing, or if a file stands where either folder belongs."""
    folder = results_folder(workdir) / names.ANALYSIS_DIR
    if folder.exists():
        results_folder(folder, "analysis folder")
    return folder


def metrics_bytes(run_dir: Path) -> bytes | None:
    """The content of a run's metrics: metrics.jsonl, else its compressed metrics.jsonl.gz (None if neither);
    StoreError if the compressed file is damaged."""
    plain, packed = Path(run_dir) / names.METRICS_FILE, Path(run_dir) / names.METRICS_FILE_GZ
    for _ in range(3):  # a compression or expansion may replace one form by the other while this reads
        try:
            return plain.read_bytes()
        except FileNotFoundError:
            pass
        except NotADirectoryError:
            results_folder(run_dir, "run folder")  # raises: the run folder is a file
        try:
            data = packed.read_bytes()
        except FileNotFoundError:
            if not plain.exists():
                return None
            continue
        try:
            return gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise StoreError(f"{packed} cannot be read ({type(e).__name__}: {e})") from None
    return None


def _record_line(record: dict) -> str:
    """One metrics.jsonl line."""
    return json.dumps(record, sort_keys=True) + "\n"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Writes `data` to `path` so that readers see the old file or the new one, never a partial one; a StoreError
    naming the path if it cannot be written there (a folder in its place, a file where a folder should be)."""
    path = Path(path)
    if path.is_dir():
        raise StoreError(f"cannot write {path}: it is a folder; allowed: a file path")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise StoreError(f"cannot write {path}: {_why_not_writable(path, e)}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def regular_file_on(paths: Iterable[Path]) -> Path | None:
    """The first existing one of `paths` (a path and its parents, innermost first) when it is not a folder: the file
    that stands where a folder should be."""
    existing = next((p for p in paths if p.exists()), None)
    return existing if existing is not None and not existing.is_dir() else None


def _why_not_writable(path: Path, error: OSError) -> str:
    """The regular file that stands where a folder of `path` should be, else the system's reason."""
    blocking = regular_file_on(path.parents)
    if blocking is not None:
        return f"{blocking} is a regular file; allowed: a path in a folder"
    return f"{error.strerror} ({error.filename or path})"


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True) + "\n")


def read_json(path: Path) -> Any:
    """The JSON value in `path`; a StoreError naming the file if it is not valid JSON (truncated or damaged)."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise StoreError(f"{path} is not valid JSON ({e}); remove or restore it") from None


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
        self._expand_metrics()
        with open(self.dir / names.METRICS_FILE, "a") as f:
            f.write(_record_line(record))
            f.flush()
            os.fsync(f.fileno())

    def put_final_metrics(self, record: dict) -> None:
        """Writes the final evaluation record in place of any record at or past its step, in one atomic rewrite
        (a re-evaluated finished run keeps its old final record until the new one is on disk)."""
        kept = [r for r in self.metrics() if r["step"] < record["step"]]
        self._expand_metrics()
        self._write_metrics([*kept, record])

    def _write_metrics(self, records: list[dict]) -> None:
        """Replaces metrics.jsonl by `records`, atomically."""
        atomic_write_text(self.dir / names.METRICS_FILE, "".join(map(_record_line, records)))

    def metrics(self) -> list[dict]:
        """The evaluation records up to the first unreadable line (a crash mid-append tears the last one);
        `problems()` reports a finished run whose records are incomplete."""
        return self._read_metrics()[0]

    def _read_metrics(self) -> tuple[list[dict], bool]:
        """(records up to the first unreadable line, whether there was one)."""
        try:
            data = metrics_bytes(self.dir)
        except StoreError:
            return [], True  # a damaged compressed file: nothing readable
        records = []
        for line in (data or b"").decode(errors="replace").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                return records, True
        return records, False

    def compress_metrics(self) -> tuple[int, int] | None:
        """Compresses a finished run's metrics.jsonl to metrics.jsonl.gz (about 4× smaller: what committed results
        and the tree a device call carries can afford); (bytes before, after), or None if there is nothing to do."""
        plain = self.dir / names.METRICS_FILE
        if self.summary() is None or not plain.exists():
            return None
        data = plain.read_bytes()
        packed = gzip.compress(data, compresslevel=9, mtime=0)  # no time stamp: the same bytes on every machine
        atomic_write_bytes(self.dir / names.METRICS_FILE_GZ, packed)
        plain.unlink()
        return len(data), len(packed)

    def _expand_metrics(self) -> None:
        """Before a write: a compressed metrics file becomes metrics.jsonl again (an unreadable one is set aside as
        `.corrupt`, its records lost, as a torn line's are)."""
        packed, plain = self.dir / names.METRICS_FILE_GZ, self.dir / names.METRICS_FILE
        if not packed.exists():
            return
        if plain.exists():  # both: the plain file is what every reader reads; an older other copy is set aside
            try:
                same = gzip.decompress(packed.read_bytes()) == plain.read_bytes()
            except (OSError, EOFError, zlib.error):
                same = False
            if same:
                packed.unlink()
            else:
                packed.replace(packed.with_name(packed.name + ".superseded"))
            return
        try:
            atomic_write_bytes(plain, metrics_bytes(self.dir))
        except StoreError:
            packed.replace(packed.with_name(packed.name + ".corrupt"))
            return
        packed.unlink()

    def covered_step(self) -> int:
        """The largest step up to which every evaluation this run's config asks for is on record, in order
        (a resume from a checkpoint at or below it leaves no gap); -1 if not even step 0 is."""
        cfg = self.config()
        expected = expected_eval_steps(cfg["train"]["steps"], cfg["eval"]["interval"])
        steps = [r.get("step") for r in self.metrics()]
        have = 0
        while have < len(steps) and have < len(expected) and steps[have] == expected[have]:
            have += 1
        return expected[-1] if have == len(expected) else expected[have] - 1

    def problems(self) -> list[str]:
        """What is wrong with a finished run's files (empty when nothing is, or when the run is not finished)."""
        summary = self.summary()
        if summary is None:
            return []
        if not (self.dir / names.CONFIG_FILE).exists():
            return [f"{names.CONFIG_FILE} is missing"]
        cfg = self.config()
        total = cfg["train"]["steps"]
        records, torn = self._read_metrics()
        expected = expected_eval_steps(total, cfg["eval"]["interval"])
        found = [r.get("step") for r in records]
        out = []
        if torn:
            out.append(f"{names.METRICS_FILE} has an unreadable line after step {found[-1] if found else 'none'}")
        if found != expected:
            missing = sorted(set(expected) - set(found))
            out.append(f"{names.METRICS_FILE} lacks the evaluations at steps {_short(missing)}" if missing else
                       f"{names.METRICS_FILE} holds steps {_short(found)}, not {_short(expected)}")
        if summary.get("step") != total:
            out.append(f"{names.SUMMARY_FILE} is for step {summary.get('step')}, not the final step {total}")
        return out

    def invalidate(self) -> None:
        """Makes a damaged finished run pending again: the engine then re-evaluates it from its final checkpoint,
        or retrains it from the newest checkpoint its metrics cover."""
        (self.dir / names.SUMMARY_FILE).unlink(missing_ok=True)

    def truncate_metrics(self, last_step: int) -> None:
        """Drops records after `last_step` (on resume from the checkpoint at that step)."""
        records = self.metrics()
        self._expand_metrics()
        kept = [r for r in records if r["step"] <= last_step]
        if len(kept) != len(records) or (self.dir / names.METRICS_FILE).exists():
            self._write_metrics(kept)

    def write_summary(self, summary: dict) -> None:
        write_json(self.dir / names.SUMMARY_FILE, summary)

    def summary(self) -> dict | None:
        """The run's summary, or None while it is unfinished (or if the file is unreadable: then it is redone)."""
        path = self.dir / names.SUMMARY_FILE
        try:
            return read_json(path) if path.exists() else None
        except StoreError:
            return None

    def write_divergence(self, info: dict) -> None:
        write_json(self.dir / names.DIVERGENCE_FILE, info)

    def divergence(self) -> dict | None:
        """Where the run diverged ({"step", "reason", "last_finite_loss"}), or None."""
        path = self.dir / names.DIVERGENCE_FILE
        return read_json(path) if path.exists() else None

    def claim(self) -> "Claim | None":
        """This process's exclusive claim on the run, or None while another live process holds it."""
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.dir / names.LOCK_FILE, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        _HELD[self.dir.resolve()] = fd
        self.mark_running()
        return Claim(self, fd)

    def holder(self) -> dict:
        """The RUNNING mark of the process that trains the run (host, pid, since), as far as it is readable."""
        try:
            return read_json(self.dir / names.HEARTBEAT_FILE)
        except (OSError, StoreError):
            return {}

    def _claimed_elsewhere(self) -> bool | None:
        """Whether another process holds the claim (None: no LOCK file, a run written before claims existed)."""
        lock = self.dir / names.LOCK_FILE
        if self.dir.resolve() in _HELD:
            return True
        if not lock.exists():
            return None
        fd = os.open(lock, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # this process holds no other descriptor of that lock (see `_HELD`), so nothing is lost

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
        claimed = self._claimed_elsewhere()
        if claimed is not None:
            return names.RUNNING if claimed else names.PENDING
        heartbeat = self.dir / names.HEARTBEAT_FILE
        if heartbeat.exists() and _process_may_be_alive(self.holder()):
            return names.RUNNING
        return names.PENDING


_HELD: dict[Path, int] = {}  # this process's claims: run folder → the descriptor holding its flock


class Claim:
    """A held claim on a run folder; `release()` (or the process's death) frees it."""

    def __init__(self, run: RunStore, fd: int):
        self.run, self._fd = run, fd

    def release(self) -> None:
        if self._fd is None:
            return
        if self.run.summary() is None:
            self.run.clear_running()
        _HELD.pop(self.run.dir.resolve(), None)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None


def describe_holder(run: RunStore) -> str:
    mark = run.holder()
    return f"pid {mark.get('pid', '?')} on {mark.get('host', '?')}"


def expected_eval_steps(steps: int, interval: int) -> list[int]:
    """The steps a run of `steps` steps evaluates at: every `interval` steps from 0, and the last step."""
    return sorted(set(range(0, steps, interval)) | {steps})


def _short(values: list) -> str:
    return str(values) if len(values) <= 6 else f"[{values[0]}, {values[1]}, …, {values[-1]}] ({len(values)})"


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
    root = results_folder(root)
    for path in sorted(root.rglob(names.CONFIG_FILE)):
        yield RunStore(path.parent)
