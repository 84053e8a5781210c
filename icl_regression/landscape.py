"""The loss landscape between two trained models (Raventós et al. Fig. 11; SPEC experiment 7).

Along the straight line θ(α) = (1 − α)·θ_a + α·θ_b between a model trained on M tasks (a) and one trained on fresh
tasks, M = ∞ (b), the training loss is measured at evenly spaced α on two sets of sequences: the finite-M model's
own pretraining distribution T_pretrain (its pool of M tasks, fresh x and noise) and fresh Gaussian tasks T_true.
The barrier is the largest excess of the loss over the straight line between its end values,
max_α [L(θ(α)) − ((1 − α)·L(θ_a) + α·L(θ_b))] (0 for a model and itself; > 0 where the path climbs a ridge between
two basins). Two M = ∞ models of different seeds give the baseline: the barrier between two solutions of the same
problem. Losses are L/D against the noisy targets, as in every other metric of the suite.

In a sweep, a finite-M model and the M = ∞ model of the same seed start from the same initialisation (the init
stream depends on the seed only), so pairs of equal seed and pairs of different seeds are both reported.

The sequences come from the evaluation stream EVAL_TASKS (sub-stream LANDSCAPE_STREAM), disjoint from every training
draw and from the sweep's own evaluation sets; the same sequences are used at every α and for every pair that shares
a pool.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from icl_regression import names, rng, tasks, trained
from icl_regression.axes import seed_stats
from icl_regression.config import ConfigError, RunConfig, num_tasks_label
from icl_regression.model import Transformer, evaluation_model
from icl_regression.store import StoreError, iter_runs

LANDSCAPE_STREAM = 11  # first index folded into rng.Stream.EVAL_TASKS for the landscape's sequences
NUM_POINTS = 21  # α = 0, 0.05, …, 1


@dataclasses.dataclass(frozen=True)
class LandscapeSettings:
    num_points: int = NUM_POINTS  # evenly spaced α in [0, 1], both ends included
    num_sequences: int = 2_048  # sequences per evaluation set
    batch_size: int = 1_024  # sequences per forward pass
    eval_seed: int = 0  # seed of the landscape's evaluation stream

    def __post_init__(self):
        for name in ("num_points", "num_sequences", "batch_size"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= (2 if name == "num_points" else 1)):
                raise ValueError(f"landscape.{name}={value!r}; allowed: an integer >= "
                                 f"{2 if name == 'num_points' else 1}")
        if self.num_sequences % min(self.batch_size, self.num_sequences):
            raise ValueError(f"landscape.num_sequences={self.num_sequences} is not a multiple of "
                             f"landscape.batch_size={self.batch_size}")


def parameter_norm(params: Any) -> float:
    """The Euclidean norm of all parameters together."""
    return math.sqrt(sum(float((x.astype("float32") ** 2).sum()) for x in jax.tree.leaves(params)))


def interpolate(params_a: Any, params_b: Any, alpha) -> Any:
    """(1 − α)·θ_a + α·θ_b, leaf by leaf."""
    return jax.tree.map(lambda a, b: (1 - alpha) * a + alpha * b, params_a, params_b)


def parameter_distance(params_a: Any, params_b: Any) -> dict:
    """‖θ_a − θ_b‖ over all parameters, the two norms, and the distance relative to their mean norm."""
    diff = parameter_norm(jax.tree.map(lambda a, b: a - b, params_a, params_b))
    norm_a, norm_b = parameter_norm(params_a), parameter_norm(params_b)
    return {"l2": diff, "norm_a": norm_a, "norm_b": norm_b, "relative": diff / (0.5 * (norm_a + norm_b))}


def barrier(alphas: Sequence[float], losses: Sequence[float]) -> dict:
    """The largest excess of the loss over the line between its end values, where it occurs, and the largest excess
    over the worse end (a stricter reading: how much higher the path climbs than either model)."""
    alphas, losses = np.asarray(alphas, float), np.asarray(losses, float)
    line = (1 - alphas) * losses[0] + alphas * losses[-1]
    excess = losses - line
    i = int(np.argmax(excess))
    return {"height": float(max(excess[i], 0.0)), "alpha": float(alphas[i]),
            "above_worse_end": float(max(losses.max() - max(losses[0], losses[-1]), 0.0))}


def sequences(data, settings: LandscapeSettings, pool: jax.Array | None, pool_key: Sequence[int]):
    """xs [N, K, D], ys [N, K] of one evaluation set: tasks from `pool` (T_pretrain), or fresh tasks of the run's
    task prior when `pool` is None (T_true). `pool_key` (seed, salt, M) keys the draw, so models sharing a pool share the set."""
    num_tasks = 0 if pool is None else pool.shape[0]
    pool = jnp.zeros((1, data.dim)) if pool is None else pool
    keys = tasks.evaluation_keys(settings.eval_seed, rng.Stream.EVAL_TASKS, LANDSCAPE_STREAM, *pool_key)
    xs, ys, _ = tasks.sample_sequences(keys, pool, num_tasks, settings.num_sequences, data.context_len,
                                       data.noise_std, data.task_scale, task_prior=data.task_prior)
    return xs, ys


def pretrain_pool(cfg: RunConfig) -> tuple[jax.Array, tuple[int, ...]]:
    """The pool a finite-M run trained on (as the engine builds it), and its key for `sequences`."""
    pid = trained.pool_id_of(cfg)
    return trained.pool_of(cfg), (1, pid.seed, pid.salt, cfg.data.num_tasks)


def make_path_loss(model: Transformer, batch_size: int):
    """Jitted `(θ_a, θ_b, alphas [A], xs, ys) → (L/D [A], predictions at α = 0 and 1 [2, N, K])`; callers pass
    `model.evaluation_model(…)`, so that a barrier is measured in float32 like every evaluation."""

    def predict(params, xs, ys):
        num, size = xs.shape[0], min(batch_size, xs.shape[0])
        chunks = (xs.reshape(num // size, size, *xs.shape[1:]), ys.reshape(num // size, size, *ys.shape[1:]))
        return jax.lax.map(lambda c: model.apply(params, c[0], c[1]), chunks).reshape(num, -1)

    def path_loss(params_a, params_b, alphas, xs, ys):
        def loss_at(alpha):
            preds = predict(interpolate(params_a, params_b, alpha), xs, ys)
            return jnp.mean(jnp.square(preds - ys)) / xs.shape[-1]
        losses = jax.lax.map(loss_at, alphas)
        ends = jnp.stack([predict(params_a, xs, ys), predict(params_b, xs, ys)])
        return losses, ends

    return jax.jit(path_loss)


def landscape_between(cfg_a: RunConfig, params_a: Any, cfg_b: RunConfig, params_b: Any,
                      settings: LandscapeSettings = LandscapeSettings(), path_loss=None) -> dict:
    """Loss along the straight path from model a to model b on a's T_pretrain (when a has a finite pool) and on
    T_true, the barrier of each, the parameter distance, and Δ between the two models' predictions on T_true."""
    if cfg_a.model != cfg_b.model or dataclasses.replace(cfg_a.data, num_tasks=0) != \
            dataclasses.replace(cfg_b.data, num_tasks=0):
        raise ValueError("models on one path must share the model and the data settings other than M; got "
                         f"{cfg_a.model}, {cfg_a.data} and {cfg_b.model}, {cfg_b.data}")
    path_loss = path_loss or make_path_loss(evaluation_model(Transformer(cfg_a.model)), settings.batch_size)
    alphas = np.linspace(0.0, 1.0, settings.num_points)
    sets = {names.TRUE: sequences(cfg_a.data, settings, None, (0,))}
    if cfg_a.data.num_tasks > 0:
        pool, key = pretrain_pool(cfg_a)
        sets[names.PRETRAIN] = sequences(cfg_a.data, settings, pool, key)
    out = {"alphas": alphas.tolist(), "distance": parameter_distance(params_a, params_b), "loss": {}, "barrier": {}}
    for eval_set, (xs, ys) in sets.items():
        losses, ends = jax.device_get(path_loss(params_a, params_b, jnp.asarray(alphas, jnp.float32), xs, ys))
        out["loss"][eval_set] = [float(v) for v in losses]
        out["barrier"][eval_set] = barrier(alphas, losses)
        if eval_set == names.TRUE:
            out["delta_a_b_true"] = float(np.mean(np.square(ends[0] - ends[1])) / cfg_a.data.dim)
    return out


# --- A sweep's pairs. ---


def sweep_pairs(runs: Sequence[Mapping], budget: tuple[int, int]) -> list[dict]:
    """The pairs of a sweep at one budget: every finite M with every M = ∞ seed (same seed: same initialisation),
    and every two M = ∞ seeds (the baseline). `runs`: {"name", "num_tasks", "seed", "batch_size", "steps", ...}."""
    at = [r for r in runs if (r["batch_size"], r["steps"]) == tuple(budget) and r["status"] == names.DONE]
    infinite = sorted((r for r in at if r["num_tasks"] <= 0), key=lambda r: r["seed"])
    finite = sorted((r for r in at if r["num_tasks"] > 0), key=lambda r: (r["num_tasks"], r["seed"]))
    pairs = [{"kind": "finite_vs_infinite", "a": f, "b": i, "same_init": f["seed"] == i["seed"]}
             for f in finite for i in infinite]
    pairs += [{"kind": "infinite_vs_infinite", "a": a, "b": b, "same_init": False}
              for a, b in itertools.combinations(infinite, 2)]
    return pairs


def sweep_landscape(workdir: Path, budget: tuple[int, int], scratch: Path | None,
                    settings: LandscapeSettings = LandscapeSettings(), num_tasks: Sequence[int] | None = None,
                    finite_seeds: Sequence[int] | None = None, print_fn=print, retrain_rtol: float = 0.0) -> dict:
    """The landscape of every pair of a stored sweep at `budget` (`num_tasks`, `finite_seeds`: only these finite-M
    runs; every M = ∞ run is used), with final parameters from checkpoints or regenerated into `scratch` and verified
    (trained.load_trained: the runs' compiled groups retrained, their metrics equal to the stored ones, or within
    `retrain_rtol` of them at the final evaluation)."""
    runs = {}
    for run in iter_runs(Path(workdir) / names.RUNS_DIR):
        summary = run.summary()
        if summary is not None:
            runs[run.name] = {**{k: summary[k] for k in ("name", "num_tasks", "seed", "batch_size", "steps",
                                                             "status")}, "dir": run.dir}
    pairs = sweep_pairs(list(runs.values()), budget)
    if not any(p["kind"] == "finite_vs_infinite" for p in pairs):
        raise StoreError(f"no finished finite-M and M = ∞ runs at B={budget[0]}, N={budget[1]} under {workdir}")
    for name, wanted, key in (("num_tasks", num_tasks, "num_tasks"), ("finite_seeds", finite_seeds, "seed")):
        if wanted is None:
            continue
        there = sorted({p["a"][key] for p in pairs if p["kind"] == "finite_vs_infinite"})
        pairs = [p for p in pairs if p["kind"] == "infinite_vs_infinite" or p["a"][key] in set(wanted)]
        if not any(p["kind"] == "finite_vs_infinite" for p in pairs):
            raise ConfigError(f"landscape.{name}={list(wanted)} matches no finished finite-M run (with an M = ∞ run) "
                              f"at B={budget[0]}, N={budget[1]} under {workdir}; allowed: values among {there}")
    needed = sorted({p[end]["name"] for p in pairs for end in ("a", "b")})
    cells = {c.name: c for c in trained.sweep_cells(workdir)}
    missing = [n for n in needed if n not in cells]
    if missing:
        raise StoreError(f"runs {missing[:3]} of {workdir} are not cells of its sweep_config.json")
    print_fn(f"[landscape] final parameters of {len(needed)} run(s)")
    loaded = {r.name: (r.config, r.params)
              for r in trained.load_trained(workdir, [cells[n] for n in needed], scratch, retrain_rtol,
                                            print_fn=print_fn)}

    def load(run: Mapping):
        return loaded[run["name"]]

    results, path_loss = [], None
    for pair in pairs:
        (cfg_a, params_a), (cfg_b, params_b) = load(pair["a"]), load(pair["b"])
        path_loss = path_loss or make_path_loss(evaluation_model(Transformer(cfg_a.model)), settings.batch_size)
        entry = landscape_between(cfg_a, params_a, cfg_b, params_b, settings, path_loss)
        results.append({"kind": pair["kind"], "same_init": pair["same_init"], "a": pair["a"]["name"],
                        "b": pair["b"]["name"], "num_tasks": pair["a"]["num_tasks"], "seed_a": pair["a"]["seed"],
                        "seed_b": pair["b"]["seed"], **entry})
        print_fn(f"[landscape] M={num_tasks_label(pair['a']['num_tasks'])} seed {pair['a']['seed']} → M=∞ seed "
                 f"{pair['b']['seed']}: barrier " + ", ".join(f"{k} {v['height']:.4f}" for k, v in
                                                              entry["barrier"].items())
                 + f"; distance {entry['distance']['l2']:.2f}")
    return {"experiment": "landscape", "budget": list(budget), "settings": dataclasses.asdict(settings),
            "num_tasks": list(num_tasks) if num_tasks else None,
            "finite_seeds": list(finite_seeds) if finite_seeds else None,
            "pairs": results, "summary": summarize_pairs(results)}


def summarize_pairs(pairs: Sequence[Mapping]) -> list[dict]:
    """Per (kind, M, same initialisation or not): seed statistics of the barriers, the distance and Δ_{a,b}."""
    groups: dict = {}
    for p in pairs:
        groups.setdefault((p["kind"], p["num_tasks"], p["same_init"]), []).append(p)
    out = []
    for (kind, num_tasks, same_init), members in sorted(groups.items(),
                                                        key=lambda g: (g[0][0], g[0][1] or math.inf, g[0][2])):
        entry = {"kind": kind, "num_tasks": num_tasks, "same_init": same_init, "num_pairs": len(members),
                 "distance": seed_stats([m["distance"]["l2"] for m in members]),
                 "relative_distance": seed_stats([m["distance"]["relative"] for m in members]),
                 "delta_a_b_true": seed_stats([m["delta_a_b_true"] for m in members]), "barrier": {}}
        for eval_set in names.EVAL_SETS:
            heights = [m["barrier"][eval_set]["height"] for m in members if eval_set in m["barrier"]]
            if heights:
                entry["barrier"][eval_set] = seed_stats(heights)
        out.append(entry)
    return out


def format_landscape(analysis: Mapping) -> str:
    lines = [f"loss landscape at B={analysis['budget'][0]}, N={analysis['budget'][1]} "
             f"({analysis['settings']['num_points']} points, {analysis['settings']['num_sequences']} sequences per "
             "set); barrier = max excess of L/D over the straight line between the ends; mean ± std over pairs"]
    for e in analysis["summary"]:
        label = f"M={num_tasks_label(e['num_tasks'])} vs ∞" if e["kind"] == "finite_vs_infinite" else "∞ vs ∞"
        init = "same init" if e["same_init"] else "other init"
        barriers = "  ".join(f"barrier {k} {v['mean']:.4f} ± {v['std']:.4f}" for k, v in e["barrier"].items())
        lines.append(f"  {label:12s} {init:10s} n={e['num_pairs']}  {barriers}  ‖Δθ‖ = {e['distance']['mean']:.2f} "
                     f"(relative {e['relative_distance']['mean']:.3f})  Δ_a,b(T_true) = "
                     f"{e['delta_a_b_true']['mean']:.4f}")
    return "\n".join(lines)


def run_landscape(workdir: Path, section: Mapping[str, Any], scratch: Path | None, print_fn=print,
                  retrain_rtol: float = 0.0) -> dict:
    """The landscape experiment of a config's `landscape` section (budget, num_tasks, finite_seeds and the
    LandscapeSettings fields) on the runs of `workdir`; writes `<workdir>/analysis/landscape.json` and returns it."""
    from icl_regression.training_experiments import write_analysis  # numpy only

    section = dict(section)
    budget = section.pop("budget")
    if not (isinstance(budget, (list, tuple)) and len(budget) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in budget)):
        raise ConfigError(f"landscape.budget={budget!r}; allowed: two integers >= 1 (batch size, steps), e.g. 64,10000")
    budget = tuple(budget)
    num_tasks = section.pop("num_tasks", None)
    finite_seeds = section.pop("finite_seeds", None)
    analysis = sweep_landscape(workdir, budget, scratch, LandscapeSettings(**section),
                               list(num_tasks) if num_tasks else None, list(finite_seeds) if finite_seeds else None,
                               print_fn, retrain_rtol)
    write_analysis(workdir, "landscape", analysis)
    return analysis
