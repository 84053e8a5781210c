"""Diversity sweeps: expand a grid into cells, train them in groups, keep an index, summarise the threshold.

A sweep config is a run config plus a `sweep` section whose `grid` mirrors the run sections with lists of
values (e.g. `grid.data.num_tasks = (2, 4, …, "inf")`, `grid.train.seed = (0, 1)`). Every combination is a cell
with its own run folder under `<workdir>/runs/`. Cells that can share a compiled program train together
(`engine.group_signature`); finished cells are skipped, interrupted ones resume. The run folders are the truth:
the index (`sweep_index.json`) is rebuilt from them whenever it is written, so processes that share a sweep
(`shard=(i, n)`) never disagree for long.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from icl_regression import checkpoint, names, results
from icl_regression.config import ConfigError, RunConfig, run_config_from_dict
from icl_regression.engine import GroupTrainer, Progress, group_signature
from icl_regression.model import flops_per_sequence
from icl_regression.store import RunStore, write_json

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Cell:
    config: RunConfig
    run_dir: Path

    @property
    def name(self) -> str:
        return self.run_dir.name


def grid_axes(grid: Mapping[str, Mapping[str, Sequence[Any]]]) -> list[tuple[str, str, list]]:
    """[(section, field, values)] in a fixed order; a scalar value counts as a one-value axis."""
    axes = []
    for section in sorted(grid):
        for field in sorted(grid[section]):
            values = grid[section][field]
            values = list(values) if isinstance(values, (list, tuple)) else [values]
            if not values:
                raise ConfigError(f"sweep.grid.{section}.{field} is empty; give at least one value")
            axes.append((section, field, values))
    return axes


def sweep_grids(sweep_config: Mapping[str, Any]) -> list[Mapping]:
    """The sweep's grids: `grid`, then each of `grids` (a tuple of grids whose cells are added, for experiments that
    are a union of products, e.g. budgets (B, N), (2B, N), (B, 2N) without the (2B, 2N) corner)."""
    extra = list(sweep_config.get("grids", ()) or ())
    grid = sweep_config.get("grid", {})
    grids = ([grid] if grid or not extra else []) + extra  # an empty `grid` beside `grids` adds no base cell
    return [g.to_dict() if hasattr(g, "to_dict") else g for g in grids]


def expand(config: Mapping[str, Any], workdir: Path) -> list[Cell]:
    """Every cell of the sweep, in a deterministic order (grid by grid; a cell in several grids appears once)."""
    base = {k: v for k, v in config.items() if k != "sweep"}
    cells, seen = [], set()
    for grid in sweep_grids(config.get("sweep", {})):
        axes = grid_axes(grid)
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
    """The cells of shard i of n (cell j belongs to shard j mod n), or those named explicitly."""
    if names_:
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


def plan_groups(cells: Sequence[Cell], max_group_size: int = 0) -> list[list[Cell]]:
    """Unfinished cells grouped by compiled program and resume step, split to at most `max_group_size`."""
    groups: dict = {}
    for cell in cells:
        if cell_state(cell) in (names.DONE, names.DIVERGED):
            continue
        resume = max(checkpoint.available_steps(RunStore(cell.run_dir)), default=0)
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
            done = max(checkpoint.available_steps(RunStore(cell.run_dir)), default=0)
            steps = cell.config.train.steps - done
            model_steps += steps
            flops += steps * train_flops_per_step(cell)
    return {"groups": len(groups), "models": sum(len(g) for g in groups), "model_steps": model_steps,
            "train_flops": flops}


def record_sweep_config(workdir: Path, config: Mapping[str, Any]) -> None:
    """Stores the sweep's config beside its results (the latest one; the grid may grow between calls)."""
    write_json(Path(workdir) / names.SWEEP_CONFIG_FILE, config)


class ProgressPrinter:
    """Prints cells done, model-steps/s and the time left, at most every `every_s` seconds.

    The time left comes from the FLOP rate, so groups of larger batches or models are not underestimated.
    """

    def __init__(self, total_model_steps: float, total_flops: float, num_cells: int, print_fn=print,
                 every_s: float = 10.0):
        self.total_model_steps, self.total_flops = total_model_steps, total_flops
        self.num_cells, self.print_fn, self.every_s = num_cells, print_fn, every_s
        self.done_model_steps = self.done_flops = 0.0
        self.cells_done, self.started, self.last_print = 0, time.perf_counter(), 0.0
        self._group_base = (0.0, 0.0)
        self._group_flops_per_step = 0.0

    def start_group(self, flops_per_step: float) -> None:
        """`flops_per_step`: training FLOPs of one step of the whole group (all members)."""
        self._group_base = (self.done_model_steps, self.done_flops)
        self._group_flops_per_step = flops_per_step

    def __call__(self, p: Progress) -> None:
        self.done_model_steps = self._group_base[0] + p.steps_done * p.num_members
        self.done_flops = self._group_base[1] + p.steps_done * self._group_flops_per_step
        now = time.perf_counter()
        if now - self.last_print >= self.every_s or p.step == p.total_steps:
            self.last_print = now
            elapsed = max(now - self.started, 1e-9)
            rate = self.done_model_steps / elapsed
            left = (self.total_flops - self.done_flops) / max(self.done_flops / elapsed, 1e-9)
            self.print_fn(f"[sweep] cells done {self.cells_done}/{self.num_cells} | group step {p.step}/"
                          f"{p.total_steps} x {p.num_members} models | {rate:,.0f} model-steps/s | "
                          f"~{left / 60:.1f} min left")


def run_sweep(config: Mapping[str, Any], workdir: Path, shard: tuple[int, int] | None = None,
              cell_names: Sequence[str] | None = None, max_group_size: int = 0, dry_run: bool = False,
              placement_fn: Callable | None = None, print_fn=print) -> dict | None:
    """Trains this process's cells of the sweep (skipping finished ones) and summarises when all are done.

    Returns the sweep summary (None for a dry run or while other shards' cells remain).
    `placement_fn(num_members, batch_size)` gives a device placement for a group (None: one device).
    """
    workdir = Path(workdir)
    cells = expand(config, workdir)
    mine = select(cells, shard, cell_names)
    groups = plan_groups(mine, max_group_size)
    cost = plan_cost(groups)
    print_fn(f"[sweep] {len(cells)} cells, {len(mine)} in this selection, {cost['models']} to train in "
             f"{cost['groups']} group(s): {cost['model_steps']:,.0f} model-steps, "
             f"{cost['train_flops'] / 1e12:,.1f} TFLOP")
    if dry_run:
        for group in groups:
            print_fn(f"  group of {len(group)}: " + ", ".join(c.name for c in group))
        return None
    workdir.mkdir(parents=True, exist_ok=True)
    record_sweep_config(workdir, config)
    write_index(workdir, cells)
    printer = ProgressPrinter(cost["model_steps"], cost["train_flops"], len(mine), print_fn)
    printer.cells_done = len(mine) - cost["models"]
    try:
        for group in groups:
            placement = placement_fn(len(group), group[0].config.train.batch_size) if placement_fn else None
            trainer = GroupTrainer([c.config for c in group], [c.run_dir for c in group], placement)
            printer.start_group(sum(train_flops_per_step(c) for c in group))
            trainer.run(progress=printer, on_start=lambda: write_index(workdir, cells))
            printer.cells_done += len(group)
            write_index(workdir, cells)
    finally:  # also after an interruption: the index shows what is done and what is left
        index = write_index(workdir, cells)
    if index["counts"][names.DONE] + index["counts"][names.DIVERGED] < len(cells):
        print_fn(f"[sweep] this selection is finished; {index['counts']} over the whole sweep")
    return results.summarize(workdir, [c.run_dir for c in cells])
