"""Packing a sweep folder for transport: results in one archive, checkpoints of unfinished cells in parts.

A GPU lease returns at most 8 files of at most 16 MiB each, 64 MiB together, and the next lease carries them in
beside the repository (64 MiB in all), so a sweep travels as `<stem>-results.tar.gz` (every run's config, metrics,
summary and divergence record, the sweep's config, config history, index, summary, figures and stored analyses;
never checkpoints; split into `.partNN` files of 15 MiB if it is larger) and, to resume elsewhere,
`<stem>-checkpoints.tar.partNN` (the newest checkpoint of every unfinished run that fits the byte budget, an
uncompressed tar split into parts of at most 15 MiB). Parts are written under temporary names and renamed once the
whole archive is written, so an interrupted packing leaves no part that looks complete.

Every archive ends with a manifest (`MANIFEST`: each file's path, size and SHA-256). `unpack` extracts into a
staging folder, checks every file against the manifest (tar and gzip in stream mode check nothing: a changed byte
would be written as it is, a damaged header read as the end of the archive), and only then moves the files into the
sweep folder; a damaged, cut or incomplete archive is refused in one line and changes nothing. No jax: it runs on
any machine.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import time
import zlib
from pathlib import Path
from typing import Iterable, Sequence

from icl_regression import names
from icl_regression.store import RunStore, StoreError, atomic_write_bytes

MiB = 1024 * 1024
PART_BYTES = 15 * MiB
RUN_FILES = (names.CONFIG_FILE, names.METRICS_FILE, names.METRICS_FILE_GZ, names.SUMMARY_FILE, names.DIVERGENCE_FILE)
TOP_SUFFIXES = (".json", ".jsonl", ".txt", ".log")
FIGURE_SUFFIXES = (".png", ".pdf")
RESULTS_SUFFIX = "-results.tar.gz"
CHECKPOINTS_INFIX = "-checkpoints.tar.part"
MANIFEST = "MANIFEST"  # the last member of every archive (not written into the sweep folder)
STAGING_DIR = ".unpacking"  # inside the sweep folder while an archive is checked (same file system: moves are renames)


def safe_stem(text: str) -> str:
    """A file-name stem of letters, digits and . _ - only (what a lease may bring back)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-")
    return stem or "sweep"


def _run_dirs(workdir: Path) -> list[Path]:
    return sorted(p.parent for p in (workdir / names.RUNS_DIR).glob(f"*/{names.CONFIG_FILE}"))


def result_files(workdir: Path) -> list[Path]:
    """Every file of the sweep's results (relative paths), checkpoints and caches excluded."""
    workdir = Path(workdir)
    files = [p for p in workdir.iterdir() if p.is_file() and p.suffix in TOP_SUFFIXES]
    files += [p for p in (workdir / "figures").glob("*") if p.suffix in FIGURE_SUFFIXES]
    # Stored analyses (landscape, interpolation, …): they need checkpoints, which never travel.
    files += [p for p in (workdir / names.ANALYSIS_DIR).glob("*") if p.is_file() and p.suffix in TOP_SUFFIXES]
    for run_dir in _run_dirs(workdir):
        files += [run_dir / name for name in RUN_FILES if (run_dir / name).is_file()]
    return sorted(p.relative_to(workdir) for p in files)


def compress_finished_metrics(workdir: Path) -> tuple[int, int, int]:
    """Compresses every finished run's metrics in place (`RunStore.compress_metrics`), as committed results are
    kept; returns (runs compressed, bytes before, bytes after)."""
    count = before = after = 0
    for run_dir in _run_dirs(_check_workdir(workdir)):
        sizes = RunStore(run_dir).compress_metrics()
        if sizes is not None:
            count, before, after = count + 1, before + sizes[0], after + sizes[1]
    return count, before, after


def _check_workdir(workdir: Path) -> Path:
    workdir = Path(workdir)
    if not (workdir / names.RUNS_DIR).is_dir():
        raise StoreError(f"{workdir} holds no {names.RUNS_DIR}/ folder: not a sweep or run folder")
    return workdir


def pack_results(workdir: Path, out_dir: Path, stem: str | None = None, part_bytes: int = PART_BYTES) -> list[Path]:
    """Writes `<out_dir>/<stem>-results.tar.gz` (split into `….tar.gz.partNN` files of at most `part_bytes` when it
    is larger) and returns the paths written."""
    workdir = _check_workdir(workdir)
    single = Path(out_dir) / f"{safe_stem(stem or workdir.resolve().name)}{RESULTS_SUFFIX}"
    single.parent.mkdir(parents=True, exist_ok=True)
    _remove_earlier(single)
    with _parts(Path(f"{single}.part"), part_bytes) as writer:
        _write_archive(writer, "w|gz", workdir, result_files(workdir))
    if len(writer.paths) == 1:
        writer.paths[0].replace(single)
        return [single]
    return writer.paths


def _write_archive(stream, mode: str, workdir: Path, files: Sequence[Path]) -> None:
    """A tar stream of `files` (relative to `workdir`) followed by their manifest."""
    entries = []
    with tarfile.open(fileobj=stream, mode=mode) as tar:
        for rel in files:
            data = (workdir / rel).read_bytes()
            _add(tar, str(rel), data)
            entries.append({"path": str(rel), "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()})
        _add(tar, MANIFEST, json.dumps({"files": entries}, indent=0).encode())


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), int(time.time()), 0o644
    tar.addfile(info, io.BytesIO(data))


def _member_bytes(size: int) -> int:
    """What a file of `size` bytes takes in a tar: a 512-byte header and its content padded to 512."""
    return 512 + -(-size // 512) * 512


def unfinished_checkpoints(workdir: Path) -> list[Path]:
    """The newest checkpoint of every run that has one and no summary (relative paths)."""
    from icl_regression import checkpoint  # flax: only for the checkpoint file names

    out = []
    for run_dir in _run_dirs(Path(workdir)):
        run = RunStore(run_dir)
        steps = checkpoint.available_steps(run)
        if steps and run.summary() is None:
            out.append((run.checkpoint_dir / f"{checkpoint.PREFIX}{steps[-1]}{checkpoint.SUFFIX}")
                       .relative_to(workdir))
    return out


class _PartWriter(io.RawIOBase):
    """A binary stream cut into files `<prefix>00`, `<prefix>01`, … of at most `part_bytes` each, written under
    temporary names (`.<name>.tmp`) until `commit` renames them all."""

    def __init__(self, prefix: Path, part_bytes: int):
        self.prefix, self.part_bytes, self.paths, self.temporary = prefix, part_bytes, [], []
        self._file, self._left = None, 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        view = memoryview(data)
        while view:
            if self._left == 0:
                self._next()
            chunk = view[:self._left]
            self._file.write(chunk)
            self._left -= len(chunk)
            view = view[len(chunk):]
        return len(data)

    def _next(self) -> None:
        self._close_part()
        self.paths.append(Path(f"{self.prefix}{len(self.paths):02d}"))
        self.temporary.append(self.paths[-1].with_name(f".{self.paths[-1].name}.tmp"))
        self._file, self._left = open(self.temporary[-1], "wb"), self.part_bytes

    def _close_part(self) -> None:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None

    def commit(self) -> None:
        """Gives every part its final name (the stream is complete)."""
        self._close_part()
        for temporary, path in zip(self.temporary, self.paths):
            os.replace(temporary, path)

    def close(self) -> None:
        self._close_part()
        super().close()


def _remove_earlier(name: Path) -> None:
    """Removes the files an earlier packing under `name` left (`name`, its `.partNN` files, which would mix in on
    unpack, and the temporary parts of a packing that was killed)."""
    for old in [*name.parent.glob(name.name + "*"), *name.parent.glob(f".{name.name}*.tmp")]:
        old.unlink(missing_ok=True)


@contextlib.contextmanager
def _parts(prefix: Path, part_bytes: int):
    """A `_PartWriter` whose parts get their final names only if the block completes; otherwise they are removed."""
    writer = _PartWriter(prefix, part_bytes)
    try:
        yield writer
        writer.commit()
    finally:
        writer.close()
        for temporary in writer.temporary:
            temporary.unlink(missing_ok=True)


def pack_checkpoints(workdir: Path, out_dir: Path, stem: str | None = None, part_bytes: int = PART_BYTES,
                     max_parts: int | None = None, max_bytes: int | None = None) -> tuple[list[Path], list[Path]]:
    """Writes the unfinished runs' newest checkpoints as `<stem>-checkpoints.tar.partNN` files of at most
    `part_bytes`; with `max_parts` or `max_bytes` (the parts together), only whole runs that fit are packed.
    Returns (parts, checkpoints left out)."""
    workdir = _check_workdir(workdir)
    limits = [n for n in (None if max_parts is None else max_parts * part_bytes, max_bytes) if n is not None]
    budget = min(limits) - 10 * 1024 if limits else None  # room for the tar trailer
    packed, left_out, used = [], [], 0
    for rel in unfinished_checkpoints(workdir):
        size = _member_bytes((workdir / rel).stat().st_size) + _member_bytes(200)  # + its manifest line, at most
        if budget is not None and used + size + 512 > budget:  # + the manifest's header
            left_out.append(rel)
            continue
        packed.append(rel)
        used += size
    prefix = Path(out_dir) / f"{safe_stem(stem or workdir.resolve().name)}{CHECKPOINTS_INFIX}"
    prefix.parent.mkdir(parents=True, exist_ok=True)
    _remove_earlier(prefix)  # also when nothing is packed: an earlier packing's parts would be unpacked again
    if not packed:
        return [], left_out
    with _parts(prefix, part_bytes) as writer:
        _write_archive(writer, "w|", workdir, packed)
    return writer.paths, left_out


class _PartReader(io.RawIOBase):
    """The concatenation of several files, read in order."""

    def __init__(self, paths: Sequence[Path]):
        self._paths, self._file = list(paths), None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while True:
            if self._file is None:
                if not self._paths:
                    return 0
                self._file = open(self._paths.pop(0), "rb")
            count = self._file.readinto(buffer)
            if count:
                return count
            self._file.close()
            self._file = None


def archives_in(paths: Iterable[Path]) -> list[list[Path]]:
    """Groups files into archives: a results archive alone, or the parts of one archive together, in order."""
    files = []
    for path in map(Path, paths):
        if not path.exists():
            raise StoreError(f"{path} does not exist; allowed: archives, their parts, or folders holding them")
        files += sorted(path.iterdir()) if path.is_dir() else [path]
    groups: dict[str, list[Path]] = {}
    for path in files:
        base = re.sub(r"\.part\d+$", "", path.name)
        if base.endswith(RESULTS_SUFFIX) or base.endswith(CHECKPOINTS_INFIX[:-len(".part")]):
            groups.setdefault(base, []).append(path)
    return [sorted(group, key=_part_number) for _, group in sorted(groups.items())]


def _part_number(path: Path) -> int:
    match = re.search(r"\.part(\d+)$", path.name)
    return int(match.group(1)) if match else -1


def unpack(paths: Iterable[Path], workdir: Path) -> list[Path]:
    """Extracts results archives and checkpoint parts (files, or folders holding them) into `workdir`; returns
    the files written. Every archive is checked whole (against its manifest) before any of it is written; members
    that would land outside `workdir` are refused."""
    workdir, paths = Path(workdir), list(paths)
    archives = archives_in(paths)
    if not archives:
        raise StoreError(f"no *{RESULTS_SUFFIX} or *{CHECKPOINTS_INFIX}NN files in {[str(p) for p in paths]}")
    for parts in archives:
        _check_parts(parts)
    staging = workdir / STAGING_DIR
    shutil.rmtree(staging, ignore_errors=True)  # what an interrupted unpacking left
    try:
        checked = [_extract_checked(parts, workdir, staging / str(i)) for i, parts in enumerate(archives)]
        written = []
        for files in checked:  # every archive is whole: now they go into place, each file by a rename
            for source, target in files:
                try:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(source, target)
                except OSError as e:
                    raise StoreError(f"cannot put {target} in place ({type(e).__name__}: {e}); {len(written)} "
                                     "file(s) were already moved in: unpack again once it is free") from None
                written.append(target)
                _drop_other_metrics_form(target)
        return written
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _check_parts(parts: Sequence[Path]) -> None:
    """Refuses an archive in parts that lacks one (its parts are numbered 00, 01, … without a gap)."""
    numbers = [int(m.group(1)) for m in (re.search(r"\.part(\d+)$", p.name) for p in parts) if m]
    missing = sorted(set(range(max(numbers, default=-1) + 1)) - set(numbers))
    if missing:
        raise StoreError(f"{parts[0].parent}: {re.sub(r'[.]part[0-9]+$', '', parts[0].name)} lacks part(s) "
                         f"{', '.join(f'{n:02d}' for n in missing)} (found {', '.join(p.name for p in parts)}); "
                         "copy every part")


def _drop_other_metrics_form(target: Path) -> None:
    """A run's metrics arrive as metrics.jsonl or metrics.jsonl.gz: the other form already in the folder is older
    (readers prefer the plain file, so an older plain one would hide a newer compressed one)."""
    other = {names.METRICS_FILE: names.METRICS_FILE_GZ, names.METRICS_FILE_GZ: names.METRICS_FILE}.get(target.name)
    if other is not None:
        (target.parent / other).unlink(missing_ok=True)


def _describe(parts: Sequence[Path]) -> str:
    return str(parts[0]) if len(parts) == 1 else f"{parts[0]} … {parts[-1].name} ({len(parts)} parts)"


def _extract_checked(parts: Sequence[Path], workdir: Path, staging: Path) -> list[tuple[Path, Path]]:
    """Extracts one archive (its parts in order) into `staging` and checks it against its manifest; returns
    (staged file, its place in `workdir`) for every file. StoreError if anything is missing, extra or changed."""
    try:
        received, manifest = _extract(parts, workdir, staging)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise StoreError(f"{_describe(parts)} is not a complete archive ({type(e).__name__}: {e}): it was cut short "
                         "or damaged; copy it again (every part), or pack the sweep again") from None
    damaged = "it was cut short or damaged; copy it again (every part), or pack the sweep again"
    if manifest is None:
        raise StoreError(f"{_describe(parts)} is not a complete archive (no {MANIFEST} at its end): {damaged}")
    try:
        expected = {e["path"]: (e["bytes"], e["sha256"]) for e in json.loads(manifest)["files"]}
    except (ValueError, KeyError, TypeError) as e:
        raise StoreError(f"{_describe(parts)} is damaged: its {MANIFEST} is unreadable ({type(e).__name__}); "
                         f"{damaged}") from None
    problems = [f"{name} is missing" for name in expected if name not in received]
    problems += [f"{name} is not in the manifest" for name in received if name not in expected]
    problems += [f"{name} differs from what was packed" for name in received
                 if name in expected and received[name] != expected[name]]
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise StoreError(f"{_describe(parts)} is damaged: {'; '.join(problems[:3])}{more}; nothing was unpacked; "
                         "copy it again (every part), or pack the sweep again")
    return [(staging / name, workdir / name) for name in expected]


def _extract(parts: Sequence[Path], workdir: Path, staging: Path) -> tuple[dict, bytes | None]:
    """Writes one archive's files under `staging`; returns {path: (bytes, sha256)} and the manifest's text."""
    received, manifest = {}, None
    stream = io.BufferedReader(_PartReader(parts))
    if re.sub(r"\.part\d+$", "", parts[0].name).endswith(".gz"):
        stream = gzip.GzipFile(fileobj=stream, mode="rb")  # checks the CRC and length once read to the end
    with stream, tarfile.open(fileobj=stream, mode="r|") as tar:
        for member in tar:
            target = (workdir / member.name).resolve()
            inside = workdir.resolve() in target.parents and Path(member.name).parts[0] != STAGING_DIR
            if not member.isfile() or not inside or member.name in received or manifest is not None:
                raise StoreError(f"{parts[0]}: refusing {member.name!r} (not a plain file inside the folder, or "
                                 f"one written twice, or past the {MANIFEST})")
            data = tar.extractfile(member).read()
            if member.name == MANIFEST:
                manifest = data
                continue
            atomic_write_bytes(staging / member.name, data)
            received[member.name] = (len(data), hashlib.sha256(data).hexdigest())
        while chunk := stream.read(1 << 20):  # to the end: the tar's zero padding, and gzip's CRC check
            if chunk.strip(b"\0"):
                raise tarfile.ReadError("bytes other than padding after the end of the archive")
    return received, manifest
