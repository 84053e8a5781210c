"""Speed of whole training steps, of evaluation and of dMMSE, measured side by side with the paper's way of training,
and the device's copy rate (what turns a roofline prediction into this card's terms).

Every figure comes from one process on one device (the default device): compile (timed apart, ahead of the first
call), one untimed warm-up call, then the median of several repeats, each synchronised with `block_until_ready`; no
rate includes compilation. The repeats of the timed paths alternate, so that other work on a shared machine slows
them alike. A training step is the whole step the engine runs: sampling on device, forward, backward and Adam
(`training.make_train_chunk`). Three paths run side by side: the ensemble on the float32 path the sweeps use, the
same ensemble on a fast path (`ModelConfig.fast_path`, e.g. bfloat16 with cuDNN attention and fused kernels), and
the paper's recipe on the same device: one model per compiled program, float32, one step per call from a Python
loop. Ratios between them are the figures to trust across machines; absolute rates depend on the device and on
what else runs on it.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import os
import platform
import re
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp

from icl_regression import estimators, evaluation, rng, store, tasks, training
from icl_regression.config import EvalConfig, RunConfig, fast_path_overrides
from icl_regression.model import Transformer, count_params, flops_per_sequence

# Dense peak FLOP/s per device, matched on a substring of `device.device_kind` (first match wins: keep the more
# specific names first). bf16 is the tensor-core / MXU rate; fp32 the plain (non-tensor-core) rate; tf32 the
# tensor-core rate of float32 matmuls at XLA's default precision on NVIDIA GPUs since Ampere (TF32), the peak a
# float32 program is measured against there unless jax_default_matmul_precision asks for full float32.
# `measured_bf16` is a bf16 matmul rate measured on this workplace's cards (DEVICE.md: 798 TFLOP/s on an H100; the
# device README: about 790 on an H200, the same chip).
@dataclasses.dataclass(frozen=True)
class DevicePeak:
    bf16: float | None
    fp32: float | None
    measured_bf16: float | None = None
    tf32: float | None = None
    source: str = "vendor datasheet, dense"


PEAKS: tuple[tuple[str, DevicePeak], ...] = (
    ("H100 PCIe", DevicePeak(756e12, 51e12, tf32=378e12)),
    ("GH200", DevicePeak(989e12, 67e12, tf32=495e12)),  # before "H200": "NVIDIA GH200" contains it
    ("H100", DevicePeak(989e12, 67e12, 798e12, tf32=495e12)),  # SXM
    ("H200", DevicePeak(989e12, 67e12, 790e12, tf32=495e12)),  # same GH100 chip as the H100 SXM
    ("A100", DevicePeak(312e12, 19.5e12, tf32=156e12)),
    ("TPU v4", DevicePeak(275e12, None)),  # fp32 matmuls run as several bf16 passes: no single fp32 peak
    ("TPU v5 lite", DevicePeak(197e12, None)),  # v5e
    ("TPU v5e", DevicePeak(197e12, None)),
    ("TPU v5p", DevicePeak(459e12, None)),
    ("TPU v5", DevicePeak(459e12, None)),  # v5p reports "TPU v5"
    ("TPU v6 lite", DevicePeak(918e12, None)),  # v6e (Trillium)
)

# Defaults that depend on the backend; flags left unset take these. `fast_path` is a ModelConfig.fast_path label
# ("fast" = config.FAST_PATH: bfloat16 + fused attention, MLP and LayerNorm kernels) or "none"; on CPU the Pallas
# kernels would run in interpret mode, which says nothing of speed, so the CPU's fast path is plain bfloat16.
BACKEND_DEFAULTS = {
    "gpu": {"ensemble_size": 20, "fast_path": "fast", "steps_per_call": 100, "dmmse_tasks": 2**20,
            "dmmse_sequences": 2**16, "copy_bytes": 2**30},
    "tpu": {"ensemble_size": 20, "fast_path": "bfloat16", "steps_per_call": 100, "dmmse_tasks": 2**20,
            "dmmse_sequences": 2**16, "copy_bytes": 2**30},
    "cpu": {"ensemble_size": 4, "fast_path": "bfloat16", "steps_per_call": 5, "dmmse_tasks": 2**14,
            "dmmse_sequences": 2**10, "copy_bytes": 2**26},
}
MAX_BENCHMARK_POOL_LOG2 = 15  # member i trains on M = 2^(2(i mod 8) + 1) ≤ 2^15 tasks: cost does not depend on M


def backend_defaults(backend: str | None = None) -> dict:
    backend = backend or jax.default_backend()
    return dict(BACKEND_DEFAULTS.get(backend, BACKEND_DEFAULTS["gpu"]))


def cpu_peak_estimate() -> tuple[float, str]:
    """An estimate, not a measurement: cores × 2 FMA units × SIMD fp32 lanes × 2 FLOP per FMA × clock.

    Lanes are 16 with AVX-512, else 8 (AVX2); the clock is the highest `cpu MHz` in /proc/cpuinfo (the current,
    not the turbo, clock), else 3 GHz. Real matmul throughput on CPU is usually well below it.
    """
    cores = os.cpu_count() or 1
    clock_hz, lanes = 3.0e9, 8
    try:
        text = Path("/proc/cpuinfo").read_text()
        clocks = [float(v) for v in re.findall(r"^cpu MHz\s*:\s*([\d.]+)", text, re.M)]
        if clocks:
            clock_hz = max(clocks) * 1e6
        if re.search(r"\bavx512f\b", text):
            lanes = 16
    except OSError:
        pass
    peak = cores * 2 * lanes * 2 * clock_hz
    return peak, f"estimate: {cores} cores × 2 FMA × {lanes} lanes × 2 × {clock_hz / 1e9:.2f} GHz"


def device_peak(device, compute_dtype: str) -> dict:
    """Peak FLOP/s of `device` at `compute_dtype` and where the number comes from (None where unknown)."""
    if device.platform == "cpu":
        peak, source = cpu_peak_estimate()
        return {"peak_flops": peak, "measured_matmul_flops": None, "source": source}
    for name, entry in PEAKS:
        if name.lower() in device.device_kind.lower():
            if compute_dtype == "bfloat16":
                return {"peak_flops": entry.bf16, "measured_matmul_flops": entry.measured_bf16,
                        "source": f"{name}: {entry.source}, bf16"}
            precision = str(jax.config.jax_default_matmul_precision).lower()
            full = precision in ("highest", "float32", "f32_f32_f32")
            if precision in ("bfloat16", "bf16_bf16_f32", "bf16_bf16_bf16"):  # float32 data, one bf16 pass
                return {"peak_flops": entry.bf16, "measured_matmul_flops": entry.measured_bf16,
                        "source": f"{name}: {entry.source}, bf16 (jax_default_matmul_precision={precision})"}
            if entry.tf32 is not None and not full:
                return {"peak_flops": entry.tf32, "measured_matmul_flops": None,
                        "source": f"{name}: {entry.source}, TF32 (XLA's default float32 matmul precision)"}
            return {"peak_flops": entry.fp32, "measured_matmul_flops": None,
                    "source": f"{name}: {entry.source}, fp32"}
    return {"peak_flops": None, "measured_matmul_flops": None, "source": f"unknown device {device.device_kind!r}"}


def median_seconds(fn: Callable[[], Any], repeats: int) -> tuple[float, list[float]]:
    """Median wall time of `fn()` (which must block until its work is done) over `repeats` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def group_configs(cfg: RunConfig, num_members: int) -> list[RunConfig]:
    """A benchmark group: seed 0, nested pools, M = 2, 8, 32, …, 2^15, then again from 2 (bounded pools: training
    cost does not depend on M, and one shared pool of 2^15 tasks × D floats is 1 MiB at D = 8)."""
    period = (MAX_BENCHMARK_POOL_LOG2 + 1) // 2
    return [cfg.replace(data={"num_tasks": 2 ** (2 * (i % period) + 1)}) for i in range(num_members)]


def group_inputs(cfgs: list[RunConfig]):
    """Initial states, per-member values and stacked pools of a group, as the engine builds them."""
    num_tasks = [c.data.num_tasks for c in cfgs]
    seeds = [c.train.seed for c in cfgs]
    data = cfgs[0].data
    pools = tasks.make_pool(cfgs[0].train.seed, max(num_tasks), data.dim, data.task_scale)[None]
    members = training.Members(jnp.asarray(seeds, jnp.int32), jnp.asarray(num_tasks, jnp.int32),
                               jnp.zeros(len(cfgs), jnp.int32))
    return training.init_group(cfgs[0], seeds), members, pools


class TrainTimer:
    """Whole training steps of a group of `num_members` models, `steps_per_call` steps per compiled call; one
    repeat makes `calls_per_repeat` calls from a Python loop and waits for the last."""

    def __init__(self, cfg: RunConfig, num_members: int, steps_per_call: int, calls_per_repeat: int = 1,
                 strategy: str | None = None, label: str | None = None):
        self.cfg, self.num_members = cfg, num_members
        self.label = label or cfg.model.fast_path
        self.steps_per_call, self.calls_per_repeat = steps_per_call, calls_per_repeat
        self.strategy = training.resolve_strategy(strategy or cfg.train.ensemble_strategy)
        self.states, self.members, self.pools = group_inputs(group_configs(cfg, num_members))
        self.chunk = training.make_train_chunk(cfg, steps_per_call, self.strategy)
        self.step, self.compile_s, self.first_call_s = 0, None, None

    def _call(self):
        self.states, metrics = self.chunk(self.states, self.members, self.pools,
                                          jnp.asarray(self.step, jnp.uint32))
        self.step += self.steps_per_call
        return metrics

    def warm_up(self) -> None:
        """Compiles ahead of time (timed as `compile_s`), then times one call (`first_call_s`: transfers, allocator
        growth, autotuning) and runs one untimed repeat; none of it enters a rate."""
        start = time.perf_counter()
        self.chunk = self.chunk.lower(self.states, self.members, self.pools, jnp.asarray(0, jnp.uint32)).compile()
        self.compile_s = time.perf_counter() - start
        start = time.perf_counter()
        jax.block_until_ready(self._call())
        self.first_call_s = time.perf_counter() - start
        self.repeat()

    def repeat(self) -> float:
        start = time.perf_counter()
        for _ in range(self.calls_per_repeat):
            metrics = self._call()
        jax.block_until_ready((self.states, metrics))
        return time.perf_counter() - start

    def figures(self, times: list[float]) -> dict:
        median, steps = statistics.median(times), self.steps_per_call * self.calls_per_repeat
        return {
            "label": self.label, "num_members": self.num_members, "strategy": self.strategy,
            "compute_dtype": self.cfg.model.compute_dtype, "path": self.cfg.model.fast_path,
            "model": dataclasses.asdict(self.cfg.model),
            "steps_per_call": self.steps_per_call, "calls_per_repeat": self.calls_per_repeat,
            "repeats": len(times), "compile_s": self.compile_s, "first_call_s": self.first_call_s,
            "repeat_s": times, "median_repeat_s": median, "step_s": median / steps, "steps_per_s": steps / median,
            "model_steps_per_s": self.num_members * steps / median,
            "params_per_model": count_params(jax.tree.map(lambda x: x[0], self.states.params)),
        }


def time_side_by_side(timers: list[TrainTimer], repeats: int) -> list[dict]:
    """Warms every timer up (unless done already), then alternates their repeats, so that a change in the machine's
    load (other jobs on a shared box) falls on all of them alike; one figures dict per timer."""
    for timer in timers:
        if timer.compile_s is None:
            timer.warm_up()
    times = [[] for _ in timers]
    for _ in range(repeats):
        for timer, ts in zip(timers, times):
            ts.append(timer.repeat())
    return [timer.figures(ts) for timer, ts in zip(timers, times)]


def time_training(cfg: RunConfig, num_members: int, steps_per_call: int, repeats: int, calls_per_repeat: int = 1,
                  strategy: str | None = None) -> tuple[dict, Any]:
    """Figures of one `TrainTimer` alone, and the group's trained states."""
    timer = TrainTimer(cfg, num_members, steps_per_call, calls_per_repeat, strategy)
    [figures] = time_side_by_side([timer], repeats)
    return figures, timer.states


def reference_timer(cfg: RunConfig, steps_per_repeat: int) -> TrainTimer:
    """The paper's recipe: one model per program, float32, one step per call, stepped from Python."""
    reference = cfg.replace(model=fast_path_overrides("float32"), train={"ensemble_strategy": "vmap"})
    return TrainTimer(reference, 1, 1, calls_per_repeat=steps_per_repeat, label="reference")


def time_evaluation(cfg: RunConfig, states, num_members: int, repeats: int,
                    eval_cfg: EvalConfig | None = None, strategy: str | None = None) -> dict:
    """One evaluation of the whole group at the default evaluation settings (as at every eval interval)."""
    eval_cfg = eval_cfg or EvalConfig()
    strategy = training.resolve_strategy(strategy or cfg.train.ensemble_strategy)
    cfgs = group_configs(cfg, num_members)
    start = time.perf_counter()
    bank = evaluation.EvalBank(cfg.data, eval_cfg)
    sets = [bank.sets_for(evaluation.PoolId(c.train.seed), c.data.num_tasks) for c in cfgs]
    per_member, shared = evaluation.stack_member_sets(sets)
    jax.block_until_ready((per_member, shared))
    bank_s = time.perf_counter() - start
    boot_idx = evaluation.bootstrap_indices(eval_cfg) if eval_cfg.num_bootstrap else None
    evaluator = evaluation.make_group_evaluator(Transformer(cfg.model), eval_cfg, strategy, with_bootstrap=False)

    def evaluate():
        jax.block_until_ready(evaluator(states.params, per_member, shared, boot_idx))

    start = time.perf_counter()
    evaluate()
    first_call_s = time.perf_counter() - start
    median, times = median_seconds(evaluate, repeats)
    return {"num_sequences": eval_cfg.num_sequences, "batch_size": eval_cfg.batch_size,
            "interval": eval_cfg.interval, "bank_build_s": bank_s, "first_call_s": first_call_s,
            "repeat_s": times, "eval_s": median}


def time_dmmse(data_cfg, num_tasks: int, num_sequences: int, repeats: int, block_size: int | None = None) -> dict:
    """`estimators.dmmse_preds` on `num_sequences` sequences against a pool of `num_tasks` tasks, in one call."""
    block_size = block_size or EvalConfig().dmmse_block
    pool = tasks.make_pool(0, num_tasks, data_cfg.dim, data_cfg.task_scale)
    keys = tasks.evaluation_keys(0, rng.Stream.EVAL_PRETRAIN, 0)
    xs, ys, _ = tasks.sample_sequences(keys, pool, num_tasks, num_sequences, data_cfg.context_len,
                                       data_cfg.noise_std, data_cfg.task_scale)

    def run():
        jax.block_until_ready(estimators.dmmse_preds(xs, ys, pool, data_cfg.noise_std, block_size=block_size))

    start = time.perf_counter()
    run()
    first_call_s = time.perf_counter() - start
    median, times = median_seconds(run, repeats)
    block = min(block_size, num_tasks)
    return {
        "num_tasks": num_tasks, "num_sequences": num_sequences, "block_size": block,
        "first_call_s": first_call_s, "repeat_s": times, "dmmse_s": median,
        "task_sequences_per_s": num_tasks * num_sequences / median,
        # Per block, ~3 float32 arrays of [N, K, block] live at once (task predictions, log-weights, probs).
        "memory_bytes_estimate": 3 * num_sequences * data_cfg.context_len * block * 4,
    }


COPY_CALLS = 20  # back-to-back calls per timed repeat of the copy: dispatch and the final wait (tens of µs) count once


def time_copy(num_bytes: int, repeats: int, calls: int = COPY_CALLS) -> dict:
    """The device's copy rate: `x + 1` over a float32 array of `num_bytes`, read once and written once; each repeat
    makes `calls` calls back to back and waits for the last (one call over 1 GiB takes about half a millisecond on
    an H200, so the launch and the wait would weigh several percent in a single call), median of `repeats`.
    Roofline predictions divide each kernel's bytes by such a rate (3.0e12 B/s, measured on the H100), so a measured
    step rate is compared with its prediction scaled by this card's rate over that one."""
    x = jnp.zeros(num_bytes // 4, jnp.float32)
    add_one = jax.jit(lambda a: a + 1.0)

    def run():
        for _ in range(calls - 1):
            add_one(x)
        jax.block_until_ready(add_one(x))

    jax.block_until_ready(add_one(x))  # compiles
    median, times = median_seconds(run, repeats)
    return {"num_bytes": x.nbytes, "calls_per_repeat": calls, "copy_s": median / calls, "repeat_s": times,
            "bytes_per_s": 2 * x.nbytes * calls / median}


def _versions() -> dict:
    out = {"python": platform.python_version()}
    for package in ("jax", "jaxlib", "flax", "optax", "numpy"):
        try:
            out[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            out[package] = None
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "device"


@dataclasses.dataclass(frozen=True)
class BenchmarkSpec:
    cfg: RunConfig  # model size, data, batch size and ensemble strategy (its compute-path fields are ignored)
    size_label: str  # "small" / "base" / "large" or e.g. "L2_d32_h2"
    ensemble_size: int
    steps_per_call: int
    repeats: int
    with_eval: bool
    dmmse_tasks: int  # 0: no dMMSE timing
    dmmse_sequences: int
    fast_paths: tuple[str, ...] = ()  # ModelConfig.fast_path labels timed beside the float32 path


def _flops(model_steps_per_s: float, flops_per_model_step: float, device, compute_dtype: str) -> dict:
    achieved = model_steps_per_s * flops_per_model_step
    peak = device_peak(device, compute_dtype)
    return {"achieved_flops": achieved, **peak,
            "peak_fraction": achieved / peak["peak_flops"] if peak["peak_flops"] else None,
            "measured_matmul_fraction": (achieved / peak["measured_matmul_flops"]
                                         if peak["measured_matmul_flops"] else None)}


def run_benchmark(spec: BenchmarkSpec, save: Callable[[dict], Any] | None = None) -> dict:
    """All figures of one benchmark, as a JSON-ready record: `train` is the ensemble on the float32 path the
    sweeps use, `fast` the same ensemble on each of `spec.fast_paths`, `reference` the paper's recipe.

    In stages, each handed to `save` as soon as it is done (`complete` false until the end), so that a run cut off
    by a time limit (a slow kernel compilation on a new GPU) keeps what it measured: first the float32 group and
    the reference side by side with the card's copy rate; then each fast path, compiled and timed side by side with
    the float32 group again (its `over_float32` is against that same-stage timing); then evaluation and dMMSE.
    """
    device = jax.devices()[0]
    cfg = spec.cfg.replace(model=fast_path_overrides("float32"))
    few = max(1, min(spec.repeats, 3))  # evaluation and dMMSE take seconds per call: fewer repeats
    ours = TrainTimer(cfg, spec.ensemble_size, spec.steps_per_call)
    train, reference = time_side_by_side([ours, reference_timer(cfg, spec.steps_per_call)], spec.repeats)
    flops_per_model_step = 3 * flops_per_sequence(cfg.model, cfg.data.context_len, cfg.data.dim) * cfg.train.batch_size
    reference_flops = _flops(reference["model_steps_per_s"], flops_per_model_step, device, "float32")
    record = {
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "complete": False,
        "device": {"kind": device.device_kind, "platform": device.platform, "count": jax.device_count(),
                   "host": platform.node()},
        "versions": _versions(),
        "settings": {"size": spec.size_label, "ensemble_size": spec.ensemble_size,
                     "steps_per_call": spec.steps_per_call, "repeats": spec.repeats, "eval": spec.with_eval,
                     "dmmse_tasks": spec.dmmse_tasks, "dmmse_sequences": spec.dmmse_sequences,
                     "fast_paths": list(spec.fast_paths)},
        "config": cfg.to_dict(),
        "train": train,
        "fast": [],
        "fast_errors": {},
        "reference": reference,
        "speedup": train["model_steps_per_s"] / reference["model_steps_per_s"],
        "flops": {
            "model_flops_per_step": flops_per_model_step,
            **_flops(train["model_steps_per_s"], flops_per_model_step, device, "float32"),
            "reference_achieved_flops": reference_flops["achieved_flops"],
            "reference_peak_fraction": reference_flops["peak_fraction"],
        },
        "eval": None,
        "dmmse": None,
        "copy": time_copy(backend_defaults(device.platform)["copy_bytes"], max(spec.repeats, 5)),
    }
    save = save or (lambda _: None)
    save(record)
    for label in spec.fast_paths:
        try:  # a fast path that fails to build or compile (a kernel on a new GPU) leaves the other figures
            timer = TrainTimer(cfg.replace(model=fast_path_overrides(label)), spec.ensemble_size,
                               spec.steps_per_call, label=label)
            timer.warm_up()
        except Exception as e:  # recorded in the JSON, and the table says so
            record["fast_errors"][label] = f"{type(e).__name__}: {e}"[:4000]
            save(record)
            continue
        float32_now, figures = time_side_by_side([ours, timer], spec.repeats)
        figures["speedup"] = figures["model_steps_per_s"] / reference["model_steps_per_s"]
        figures["over_float32"] = figures["model_steps_per_s"] / float32_now["model_steps_per_s"]
        figures["float32_model_steps_per_s"] = float32_now["model_steps_per_s"]
        figures["flops"] = _flops(figures["model_steps_per_s"], flops_per_model_step, device,
                                  figures["compute_dtype"])
        record["fast"].append(figures)
        save(record)
    if spec.with_eval:
        ev = time_evaluation(cfg, ours.states, spec.ensemble_size, few)
        ev["sweep_share"] = ev["eval_s"] / (ev["eval_s"] + ev["interval"] * train["step_s"])
        record["eval"] = ev
    if spec.dmmse_tasks > 0:
        record["dmmse"] = time_dmmse(cfg.data, spec.dmmse_tasks, spec.dmmse_sequences, few)
    record["complete"] = True
    return record


def write_record(record: dict, out_dir: Path) -> Path:
    """`<out_dir>/<device>_<size>_<timestamp>.json`, written atomically."""
    stamp = datetime.datetime.fromisoformat(record["timestamp"]).strftime("%Y%m%dT%H%M%SZ")
    path = Path(out_dir) / f"{_slug(record['device']['kind'])}_{record['settings']['size']}_{stamp}.json"
    store.write_json(path, record)
    return path


def _si(value: float | None, unit: str = "") -> str:
    if value is None:
        return "n/a"
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}".rstrip()


def format_table(record: dict) -> str:
    """A plain-text table of the figures a reader compares (rates exclude compilation, shown apart)."""
    train, ref, flops = record["train"], record["reference"], record["flops"]
    model = record["config"]["model"]
    rows = [
        ("device", f"{record['device']['kind']} ({record['device']['platform']})"),
        ("model", f"{record['settings']['size']}: {model['num_layers']} layers, d={model['d_model']}, "
                  f"{model['num_heads']} heads, {train['params_per_model']:,} params, "
                  f"batch {record['config']['train']['batch_size']}"),
    ]
    paths = [("ours", train, record["speedup"], flops)]
    paths += [("fast", f, f["speedup"], f["flops"]) for f in record["fast"]]
    for name, figures, speedup, fl in paths:
        rows += [
            (name, f"{figures['num_members']} models, {figures['strategy']}, {figures['path']}, "
                   f"{figures['steps_per_call']} steps/call"),
            ("  steps/s (group)", f"{figures['steps_per_s']:.3g}"),
            ("  model-steps/s", f"{figures['model_steps_per_s']:.4g}"),
            ("  speed-up over reference", f"{speedup:.2f}×"),
            ("  achieved", _si(fl["achieved_flops"], "FLOP/s")),
            ("  fraction of peak", "n/a" if fl["peak_fraction"] is None
             else f"{fl['peak_fraction']:.1%} of {_si(fl['peak_flops'], 'FLOP/s')} ({fl['source']})"),
            ("  compile (not in rates)", f"{figures['compile_s']:.1f} s, first call {figures['first_call_s']:.2f} s"),
        ]
        if fl["measured_matmul_fraction"] is not None:
            rows.append(("  fraction of measured matmul", f"{fl['measured_matmul_fraction']:.1%}"))
        if name == "fast":
            rows.append(("  over float32 (model-steps/s)", f"{figures['over_float32']:.2f}×"))
    for label, error in record["fast_errors"].items():
        rows.append((f"fast {label}", f"FAILED: {error.splitlines()[0][:200]}"))
    rows += [
        ("reference", "1 model/program, float32, 1 step/call"),
        ("  model-steps/s", f"{ref['model_steps_per_s']:.4g}"),
        ("  achieved", _si(flops["reference_achieved_flops"], "FLOP/s")),
        ("  compile (not in rates)", f"{ref['compile_s']:.1f} s"),
        ("model FLOPs per step", _si(flops["model_flops_per_step"], "FLOP")),
    ]
    if record.get("copy") is not None:  # records before the copy rate was timed have none
        copy = record["copy"]
        rows.append(("copy rate", f"{_si(copy['bytes_per_s'], 'B/s')} (x + 1 over {copy['num_bytes'] / 2**20:.0f} MiB "
                                  "of float32, read + write)"))
    if record["eval"] is not None:
        ev = record["eval"]
        rows += [("evaluation (group)", f"{ev['eval_s']:.3g} s for {ev['num_sequences']} sequences × 2 sets"),
                 ("  eval bank build", f"{ev['bank_build_s']:.3g} s (once per pool)"),
                 (f"  share of sweep at interval {ev['interval']}", f"{ev['sweep_share']:.1%}")]
    dm = record["dmmse"]
    if dm is not None:
        rows += [("dMMSE", f"M={dm['num_tasks']:,} × {dm['num_sequences']:,} sequences in {dm['dmmse_s']:.3g} s"),
                 ("  tasks×sequences/s", _si(dm["task_sequences_per_s"])),
                 ("  memory estimate", f"{dm['memory_bytes_estimate'] / 2**20:.0f} MiB (block {dm['block_size']})")]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
