"""Diversity sweeps: expand a grid into cells, train them in groups, keep an index.

A sweep config is a run config plus a `sweep` section whose `grid` mirrors the run sections with lists of
values (e.g. `grid.data.num_tasks = (2, 4, …, "inf")`, `grid.train.seed = (0, 1)`). Every combination is a cell
with its own run folder under `<workdir>/runs/`. Cells that can share a compiled program train together
(`engine.group_signature`); finished cells are skipped, interrupted ones resume. The run folders are the truth:
the index (`sweep_index.json`) is rebuilt from them whenever it is written, so processes that share a sweep
(`shard=(i, n)`, hosts, or the same command started twice) never disagree for long; a process trains only the
cells whose claim it holds (`RunStore.claim`). Before training, finished cells with damaged files are made pending
again (`repair_damaged`); a config other than the folder's stored one is refused unless `extend`; a `Stop`
(deadline or signal) ends the sweep after the compiled call in flight, with every model in flight checkpointed.
The summary, table and threshold are `results.summarize(workdir, run_dirs(config, workdir))`, downstream of here.
"""

from __future__ import annotations

import dataclasses
import fcntl
import itertools
import json
import logging
import math
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import jax

from icl_regression import checkpoint, names, stopping
from icl_regression.config import (ConfigError, RunConfig, dotted_fields, not_a_section, run_config_from_dict,
                                   suggest)
from icl_regression.engine import COMPILING, EVALUATING, GroupTrainer, Progress, group_signature
from icl_regression.model import flops_per_sequence
from icl_regression.store import RunStore, describe_holder, read_json, write_json

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Cell:
    config: RunConfig
    run_dir: Path

    @property
    def name(self) -> str:
        return self.run_dir.name


def grid_axes(grid: Mapping[str, Mapping[str, Sequence[Any]]], where: str = "sweep.grid"
              ) -> list[tuple[str, str, list]]:
    """[(section, field, values)] in a fixed order; a scalar value counts as a one-value axis. A section or field
    that the run config lacks is an error naming it (`where`: the grid's dotted name, for messages)."""
    fields = RunConfig().to_dict()
    axes = []
    for section in sorted(grid):
        if section not in fields:
            raise ConfigError(f"unknown config field {where}.{section}"
                              f"{suggest(section, fields, where.split('.'), list_allowed=True)}")
        if not isinstance(grid[section], Mapping):
            raise not_a_section(f"{where}.{section}", grid[section], f"{next(iter(fields[section]))}=(...)")
        for field in sorted(grid[section]):
            if field not in fields[section]:
                raise ConfigError(f"unknown config field {where}.{section}.{field}"
                                  f"{suggest(field, fields[section], [*where.split('.'), section], True)}")
            values = grid[section][field]
            values = list(values) if isinstance(values, (list, tuple)) else [values]
            if not values:
                raise ConfigError(f"{where}.{section}.{field} is empty; give at least one value")
            axes.append((section, field, values))
    return axes


# The keys of a sweep config's `sweep` section: its grids, and the dynamics analysis's settings (dynamics.py).
SWEEP_KEYS = ("grid", "grids", "analysis")


def sweep_grids(sweep_config: Mapping[str, Any]) -> list[tuple[str, Mapping]]:
    """The sweep's grids with their dotted names: `grid`, then each of `grids` (a tuple of grids whose cells are
    added, for experiments that are a union of products, e.g. budgets (B, N), (2B, N), (B, 2N) without the (2B, 2N)
    corner). A key other than `SWEEP_KEYS`, or a grid that is not a mapping, is an error naming it."""
    sweep_config = sweep_config.to_dict() if hasattr(sweep_config, "to_dict") else sweep_config
    if not isinstance(sweep_config, Mapping):
        raise not_a_section("sweep", sweep_config, "grid.data.num_tasks=(2, 4, 'inf')")
    for key in sweep_config:
        if key not in SWEEP_KEYS:
            raise ConfigError(f"unknown config field sweep.{key}{suggest(key, SWEEP_KEYS, ['sweep'], True)}")
    extra = list(sweep_config.get("grids", ()) or ())
    grid = sweep_config.get("grid", {})
    named = ([("sweep.grid", grid)] if grid or not extra else []) + [  # an empty `grid` beside `grids` adds no cell
        (f"sweep.grids[{i}]", g) for i, g in enumerate(extra)]
    named = [(name, g.to_dict() if hasattr(g, "to_dict") else g) for name, g in named]
    for name, g in named:
        if not isinstance(g, Mapping):
            raise not_a_section(name, g, "data.num_tasks=(2, 4, 'inf')")
    return named


def expand(config: Mapping[str, Any], workdir: Path) -> list[Cell]:
    """Every cell of the sweep, in a deterministic order (grid by grid; a cell in several grids appears once)."""
    base = {k: v for k, v in config.items() if k != "sweep"}
    cells, seen = [], set()
    for name, grid in sweep_grids(config.get("sweep") or {}):
        axes = grid_axes(grid, name)
        for values in itertools.product(*(axis[2] for axis in axes)):
            updates: dict = {}
            for (section, field, _), value in zip(axes, values):
                updates.setdefault(section, {})[field] = value
            cfg = run_config_from_dict(base).replace(**updates)
            if cfg.run_name not in seen:
                seen.add(cfg.run_name)
                cells.append(Cell(cfg, Path(workdir) / names.RUNS_DIR / cfg.run_name))
    return cells


def parse_shard(text: str) -> tuple[int, int]:
    """'i/n' → (i, n) with 0 <= i < n."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard={text!r}; allowed: 'i/n' with integers 0 <= i < n, e.g. 0/4")
    if not (count >= 1 and 0 <= index < count):
        raise ConfigError(f"--shard={text!r}; allowed: 'i/n' with 0 <= i < n and n >= 1")
    return index, count


def select(cells: Sequence[Cell], shard: tuple[int, int] | None = None,
           names_: Sequence[str] | None = None) -> list[Cell]:
    """The cells of shard i of n (cell j belongs to shard j mod n), or those named explicitly (each once, in the
    order first named: a cell named twice would otherwise be claimed twice, and refused by its own claim)."""
    if names_:
        names_ = list(dict.fromkeys(names_))
        by_name = {c.name: c for c in cells}
        unknown = [n for n in names_ if n not in by_name]
        if unknown:
            raise ConfigError(f"unknown cell(s) {unknown}; the sweep's cells are {sorted(by_name)}")
        return [by_name[n] for n in names_]
    if shard is None:
        return list(cells)
    index, count = shard
    return [c for j, c in enumerate(cells) if j % count == index]


def cell_state(cell: Cell) -> str:
    return RunStore(cell.run_dir).state() if cell.run_dir.exists() else names.PENDING


def write_index(workdir: Path, cells: Sequence[Cell]) -> dict:
    """Rebuilds `sweep_index.json` from the run folders."""
    rows = []
    for cell in cells:
        cfg = cell.config
        rows.append({"name": cell.name, "run_dir": str(cell.run_dir.relative_to(workdir)),
                     "num_tasks": cfg.data.num_tasks, "batch_size": cfg.train.batch_size,
                     "steps": cfg.train.steps, "seed": cfg.train.seed, "state": cell_state(cell)})
    counts = {state: sum(r["state"] == state for r in rows) for state in names.RUN_STATES}
    index = {"cells": rows, "counts": counts, "updated_at": time.time()}
    write_json(Path(workdir) / names.SWEEP_INDEX_FILE, index)
    return index


def check_group_size(max_group_size: int) -> None:
    """Refuses a group size that would plan nothing (a negative one)."""
    if not (isinstance(max_group_size, int) and max_group_size >= 0):
        raise ConfigError(f"--max_group_size={max_group_size!r}: allowed: 0 (all that fit a group) or an integer "
                          ">= 1 (models per compiled program)")


def plan_groups(cells: Sequence[Cell], max_group_size: int = 0) -> list[list[Cell]]:
    """Unfinished cells grouped by compiled program and resume step, split to at most `max_group_size` (0: no
    limit)."""
    check_group_size(max_group_size)
    groups: dict = {}
    for cell in cells:
        if cell_state(cell) in (names.DONE, names.DIVERGED):
            continue
        resume = checkpoint.resume_step(RunStore(cell.run_dir))
        groups.setdefault((group_signature(cell.config), resume), []).append(cell)
    out = []
    for members in groups.values():
        size = max_group_size or len(members)
        out += [members[i:i + size] for i in range(0, len(members), size)]
    return out


def train_flops_per_step(cell: Cell) -> float:
    """Training FLOPs of one step of a cell's model (3 × forward FLOPs per sequence × batch)."""
    cfg = cell.config
    return 3.0 * cfg.train.batch_size * flops_per_sequence(cfg.model, cfg.data.context_len, cfg.data.dim)


def plan_cost(groups: Sequence[Sequence[Cell]]) -> dict:
    """Model-steps and training FLOPs of a plan, counting only the steps past each cell's last checkpoint."""
    model_steps = flops = 0.0
    for group in groups:
        for cell in group:
            done = checkpoint.resume_step(RunStore(cell.run_dir))
            steps = cell.config.train.steps - done
            model_steps += steps
            flops += steps * train_flops_per_step(cell)
    return {"groups": len(groups), "models": sum(len(g) for g in groups), "model_steps": model_steps,
            "train_flops": flops}


def config_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """The dotted names of the fields where two sweep configs differ (run sections compared with their defaults
    filled in, so a config stored before a field was added still matches)."""
    def flat(config: Mapping[str, Any]) -> dict:
        config = json.loads(json.dumps(dict(config)))
        try:
            config.update(run_config_from_dict(config).to_dict())
        except ConfigError:
            pass
        return dotted_fields(config)
    a, b = flat(old), flat(new)
    return sorted(key for key in set(a) | set(b) if a.get(key, _MISSING) != b.get(key, _MISSING))


_MISSING = object()


def stored_config(workdir: Path) -> dict | None:
    """The sweep config stored in a sweep folder (None if there is none)."""
    path = Path(workdir) / names.SWEEP_CONFIG_FILE
    return read_json(path) if path.exists() else None


def check_config(workdir: Path, config: Mapping[str, Any], extend: bool = False) -> list[str]:
    """Refuses (ConfigError) a config that differs from the one stored in `workdir`, unless `extend`; returns the
    differing fields."""
    stored = stored_config(workdir)
    if stored is None:
        return []
    differences = config_differences(stored, config)
    if differences and not extend:
        raise ConfigError(f"{Path(workdir) / names.SWEEP_CONFIG_FILE} holds another config (differs in "
                          f"{', '.join(differences[:8])}{' …' if len(differences) > 8 else ''}); use another "
                          "--workdir, or --extend to add this config's cells to the folder")
    return differences


def record_sweep_config(workdir: Path, config: Mapping[str, Any]) -> None:
    """Stores the sweep's config beside its results, and appends it to the folder's config history when it is new
    (the grid may grow between calls with --extend; the history says which configs produced which cells)."""
    workdir = Path(workdir)
    with open(workdir / names.SWEEP_CONFIG_HISTORY_FILE, "a") as history:
        fcntl.flock(history, fcntl.LOCK_EX)  # processes starting together record a new config once
        stored = stored_config(workdir)
        if stored is None or config_differences(stored, config):
            history.write(json.dumps({"recorded_at": time.time(), "config": json.loads(json.dumps(dict(config)))},
                                     sort_keys=True) + "\n")
            history.flush()
            write_json(workdir / names.SWEEP_CONFIG_FILE, config)


class ProgressPrinter:
    """Prints cells done, model-steps/s and the time left, at most every `every_s` seconds.

    Rates and the time left exclude compilation (reported on its own); the time left comes from the FLOP rate,
    so groups of larger batches or models are not underestimated.
    """

    def __init__(self, total_model_steps: float, total_flops: float, num_cells: int, print_fn=print,
                 every_s: float = 10.0):
        self.total_model_steps, self.total_flops = total_model_steps, total_flops
        self.num_cells, self.print_fn, self.every_s = num_cells, print_fn, every_s
        self.done_model_steps = self.done_flops = 0.0
        self.cells_done, self.started, self.last_print = 0, time.perf_counter(), 0.0
        self._group_base = (0.0, 0.0)
        self._group_flops_per_step = 0.0
        self.compile_seconds, self._compile_base = 0.0, 0.0

    def start_group(self, flops_per_step: float) -> None:
        """`flops_per_step`: training FLOPs of one step of the whole group (all members)."""
        self._group_base = (self.done_model_steps, self.done_flops)
        self._group_flops_per_step = flops_per_step
        self._compile_base = self.compile_seconds

    def __call__(self, p: Progress) -> None:
        self.compile_seconds = self._compile_base + p.compile_seconds
        if p.phase == COMPILING:
            self.print_fn(f"[sweep] compiling the training program for {p.num_members} model(s)…")
            return
        if p.phase == EVALUATING:
            self.print_fn(f"[sweep] evaluating step {p.step} (compiles the evaluation)…")
            return
        self.done_model_steps = self._group_base[0] + p.steps_done * p.num_members
        self.done_flops = self._group_base[1] + p.steps_done * self._group_flops_per_step
        now = time.perf_counter()
        if now - self.last_print >= self.every_s or p.step == p.total_steps:
            self.last_print = now
            elapsed = max(now - self.started - self.compile_seconds, 1e-9)
            rate = self.done_model_steps / elapsed
            left = (self.total_flops - self.done_flops) / max(self.done_flops / elapsed, 1e-9)
            self.print_fn(f"[sweep] cells done {self.cells_done}/{self.num_cells} | group step {p.step}/"
                          f"{p.total_steps} x {p.num_members} models | setup and compilation "
                          f"{self.compile_seconds:.0f} s (not counted) | {rate:,.0f} model-steps/s | "
                          f"~{left / 60:.1f} min left")


BENCHMARKS_DIR = Path(__file__).resolve().parent.parent / "results" / "benchmarks"  # in a source checkout


def record_rate(workdir: Path, printer: "ProgressPrinter") -> None:
    """Stores the training rate this call measured (compilation excluded) for later time estimates."""
    seconds = time.perf_counter() - printer.started - printer.compile_seconds
    if printer.done_flops <= 0 or seconds <= 0:
        return
    import jax

    write_json(Path(workdir) / names.SWEEP_RATE_FILE, {
        "platform": jax.default_backend(), "device_kind": jax.devices()[0].device_kind,
        "num_devices": jax.local_device_count(), "train_flops_per_s": printer.done_flops / seconds,
        "model_steps_per_s": printer.done_model_steps / seconds, "measured_at": time.time()})


def measured_rate(workdir: Path, flops_per_step: float) -> tuple[float, str] | None:
    """(training FLOP/s, where it comes from) for this backend: the rate this sweep folder measured before, else
    the benchmark record (results/benchmarks) of the model size closest to this sweep's; None if neither."""
    import jax

    platform = jax.default_backend()
    path = Path(workdir) / names.SWEEP_RATE_FILE
    if path.exists() and read_json(path).get("platform") == platform:
        return read_json(path)["train_flops_per_s"], f"measured by this sweep on {platform}"
    records = []
    for bench in sorted(BENCHMARKS_DIR.glob("*.json")) if BENCHMARKS_DIR.is_dir() else []:
        record = read_json(bench)
        if record.get("device", {}).get("platform") == platform and record.get("flops", {}).get("achieved_flops"):
            distance = abs(math.log(record["flops"]["model_flops_per_step"] / max(flops_per_step, 1.0)))
            records.append((distance, bench.name, record["flops"]["achieved_flops"]))
    if not records:
        return None
    _, name, rate = min(records)
    return rate, f"benchmark {name}; a model of another size runs at another rate, so this is rough"


def describe_estimate(total_flops: float, flops_per_step: float, workdir: Path) -> str:
    """A one-line estimate of the training time of `total_flops` from a measured rate, or what to run to get one."""
    rate = measured_rate(workdir, flops_per_step)
    if rate is None:
        return ("estimated time: no measured rate on this backend yet (run experiments/benchmark.py, or start the "
                "sweep: it stores its rate in sweep_rate.json)")
    flops_per_s, source = rate
    return (f"estimated training time ~{stopping.format_duration(total_flops / flops_per_s)} at "
            f"{flops_per_s / 1e9:,.1f} GFLOP/s ({source}), plus compilation and evaluation")


ROOFLINE_DIR = BENCHMARKS_DIR.parent / "roofline"  # H100 predictions of experiments/roofline.py, in a source checkout
# What a roofline record must share with a group for its predicted rate to stand for the group's (the ensemble
# size may differ: a model-step's bytes, which bound these memory-bound steps, hardly depend on it).
_ROOFLINE_MATCH = (("model", "num_layers"), ("model", "d_model"), ("model", "num_heads"), ("model", "compute_dtype"),
                   ("model", "attention"), ("model", "mlp"), ("model", "layer_norm"), ("data", "dim"),
                   ("data", "context_len"), ("train", "batch_size"))


def predicted_h100_time(groups: Sequence[Sequence[Cell]]) -> str:
    """A one-line H100 training time of a plan from the roofline predictions in results/roofline (a lower bound: a
    roofline is the time of the bytes and FLOPs alone), for the groups a record matches (`_ROOFLINE_MATCH`)."""
    records = [read_json(path) for path in sorted(ROOFLINE_DIR.glob("*.json"))] if ROOFLINE_DIR.is_dir() else []
    records = [r for r in records if isinstance(r, dict) and {"config", "ensemble_size", "batch_size", "path",
                                                              "predicted_model_steps_per_s"} <= r.keys()]
    seconds, matched, files = 0.0, 0, set()
    for group in groups:
        config = group[0].config.to_dict()
        key = [config[section][field] for section, field in _ROOFLINE_MATCH]
        found = [r for r in records if [r["config"][section].get(field) for section, field in _ROOFLINE_MATCH] == key]
        if not found:
            continue
        matched += 1
        record = min(found, key=lambda r: abs(r["ensemble_size"] - len(group)))
        files.add(f"{record['config']['model']['num_layers']}L d={record['config']['model']['d_model']} "
                  f"B{record['batch_size']} E{record['ensemble_size']} {record['path']}")
        model_steps = sum(c.config.train.steps - checkpoint.resume_step(RunStore(c.run_dir)) for c in group)
        seconds += model_steps / record["predicted_model_steps_per_s"]
    if not matched:
        return ("H100 time: no roofline prediction in results/roofline matches these models (layers, width, heads, "
                "compute path, D, K, batch); experiments/roofline.py makes them for the study's sizes at D = 8, K = 16")
    return (f"H100 time by roofline prediction (a lower bound, not a measurement; {', '.join(sorted(files))}): "
            f"~{stopping.format_duration(seconds)} for {matched} of {len(groups)} group(s)")


def repair_damaged(cells: Sequence[Cell], print_fn=print) -> list[str]:
    """Finished cells whose files are damaged (a torn or short metrics.jsonl, a summary for the wrong step) are
    made pending again, with a line saying why; the engine then re-evaluates or retrains them. Returns their
    names."""
    damaged = []
    for cell in cells:
        run = RunStore(cell.run_dir)
        problems = run.problems() if cell.run_dir.exists() else []
        if not problems and cell.run_dir.exists() and run.summary() is None and (
                cell.config.train.steps in checkpoint.available_steps(run)):
            how = "is damaged (not valid JSON)" if (run.dir / names.SUMMARY_FILE).exists() else "is missing"
            print_fn(f"[sweep] {cell.name}: {names.SUMMARY_FILE} {how} though training finished; "
                     "re-evaluating it from its final checkpoint")
        if problems:
            print_fn(f"[sweep] {cell.name}: {'; '.join(problems)}; redoing it from its newest checkpoint that "
                     "the metrics cover")
            run.invalidate()
            damaged.append(cell.name)
    return damaged


def _claim(group: Sequence[Cell], held: list[Cell]) -> tuple[list[Cell], list]:
    """The cells of `group` this process now holds (and their claims); cells another live process holds go to
    `held`, cells finished meanwhile are dropped."""
    kept, claims = [], []
    for cell in group:
        run = RunStore(cell.run_dir)
        run.init(cell.config.to_dict())
        claim = run.claim()
        if claim is None:
            held.append(cell)
        elif run.summary() is not None:  # finished by another process meanwhile: take back the RUNNING mark
            run.clear_running()
            claim.release()
        else:
            kept.append(cell)
            claims.append(claim)
    return kept, claims


def _train_groups(groups, workdir, cells, printer, placement_fn, stop, print_fn) -> list[Cell]:
    """Trains the groups one after another until done or told to stop; returns the cells other processes held."""
    held: list[Cell] = []
    for group in groups:
        if stop:
            break
        group, claims = _claim(group, held)
        if not group:
            continue
        placement = placement_fn(len(group), group[0].config.train.batch_size) if placement_fn else None
        trainer = GroupTrainer([c.config for c in group], [c.run_dir for c in group], placement, print_fn)
        printer.start_group(sum(train_flops_per_step(c) for c in group))
        if trainer.run(progress=printer, on_start=lambda: write_index(workdir, cells), stop=stop, claims=claims):
            printer.cells_done += len(group)
        write_index(workdir, cells)
    return held


def run_sweep(config: Mapping[str, Any], workdir: Path, shard: tuple[int, int] | None = None,
              cell_names: Sequence[str] | None = None, max_group_size: int = 0, dry_run: bool = False,
              placement_fn: Callable | None = None, print_fn=print, stop: stopping.Stop | None = None,
              extend: bool = False) -> bool:
    """Trains this process's cells of the sweep (skipping finished ones).

    Returns whether this process should now summarise the sweep (`results.summarize(workdir, run_dirs(config,
    workdir))`): True once its selection is finished, except on a host of a multi-host sweep whose other hosts are
    still training; False for a dry run, when `stop` ended it early (the cells left are pending and resume on
    the next call), or when another process still trains some of its cells (that process summarises).
    `placement_fn(num_members, batch_size)` gives a device placement for a group (None: one device). A config
    that differs from the one stored in `workdir` is refused unless `extend`.
    """
    workdir, stop = Path(workdir), stop if stop is not None else stopping.Stop()
    check_group_size(max_group_size)  # before anything is repaired or written
    cells = expand(config, workdir)
    mine = select(cells, shard, cell_names)
    check_config(workdir, config, extend)
    if not dry_run:
        repair_damaged(mine, print_fn)
    groups = plan_groups(mine, max_group_size)
    cost = plan_cost(groups)
    print_fn(f"[sweep] {len(cells)} cells, {len(mine)} in this selection, {cost['models']} to train in "
             f"{cost['groups']} group(s): {cost['model_steps']:,.0f} model-steps, "
             f"{cost['train_flops'] / 1e12:,.1f} TFLOP")
    if dry_run:
        for group in groups:
            print_fn(f"  group of {len(group)}: " + ", ".join(c.name for c in group))
        if groups:
            print_fn("[sweep] " + describe_estimate(cost["train_flops"], train_flops_per_step(groups[0][0]), workdir))
            print_fn("[sweep] " + predicted_h100_time(groups))
        return False
    workdir.mkdir(parents=True, exist_ok=True)
    record_sweep_config(workdir, config)
    write_index(workdir, cells)
    printer = ProgressPrinter(cost["model_steps"], cost["train_flops"], len(mine), print_fn)
    printer.cells_done = len(mine) - cost["models"]
    try:
        held = _train_groups(groups, workdir, cells, printer, placement_fn, stop, print_fn)
    finally:  # also after an interruption: the index shows what is done and what is left
        index = write_index(workdir, cells)
        record_rate(workdir, printer)
    if held:
        print_fn(f"[sweep] {len(held)} cell(s) skipped: another live process trains them "
                 f"({describe_holder(RunStore(held[0].run_dir))}, …)")
    # Read after this process's own summaries are written: of two processes sharing a selection, the one that
    # finishes last sees every cell finished and summarises.
    mine_left = sum(cell_state(cell) not in (names.DONE, names.DIVERGED) for cell in mine)
    if mine_left and stop:
        counts = index["counts"]
        print_fn(f"[sweep] stopped ({stop.reason}): {counts[names.DONE] + counts[names.DIVERGED]} of {len(cells)} "
                 f"cells finished, {counts[names.PENDING]} pending; the models in flight were checkpointed")
        return False
    if mine_left:
        print_fn(f"[sweep] {mine_left} cell(s) of this selection are still training in another process, which "
                 "summarises the sweep when it finishes (or run --summarize once it has)")
        return False
    finished = index["counts"][names.DONE] + index["counts"][names.DIVERGED]
    if finished < len(cells):
        print_fn(f"[sweep] this selection is finished; {index['counts']} over the whole sweep")
        if jax.process_count() > 1:  # other hosts are still training: the one that finishes the last cell summarises
            print_fn(f"[sweep] process {jax.process_index()} of {jax.process_count()}: the summary and figures come "
                     "from the process that finishes the sweep's last cell (or --summarize once every host is done)")
            return False
    return True


def run_dirs(config: Mapping[str, Any], workdir: Path) -> list[Path]:
    """The run folders of every cell of the sweep, in grid order (what `results.summarize` reads)."""
    return [cell.run_dir for cell in expand(config, workdir)]
