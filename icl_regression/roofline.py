"""Predicted H100 speed of the whole training step, on a machine without a GPU (../shared/tools/h100_roofline).

XLA compiles the engine's training chunk (`training.make_train_chunk`: sampling, forward, backward, Adam, for a
vmapped ensemble) for an abstract H100, and the optimized program is read kernel by kernel: the bytes each kernel
reads and writes (its operands and results) over the card's copy bandwidth, or its matrix FLOPs over the peak
rate where that is longer, summed over the kernels of one step (the scan's loop body). For these memory-bound
models that predicted within 7% of measured throughput on this workplace's H100 (the tool's README).

What it cannot see: Pallas/Triton kernels are custom calls whose bytes are counted as their operands and results
(what a fused kernel is meant to move; register spills, L2 misses and poor tiling do not show) and whose FLOPs are
counted from their shapes here (`_custom_call_flops`); cuDNN attention does not compile without a GPU, so
`attention="pallas"` (JAX's Pallas flash attention, the same arrays in and out) stands in for it; autotuning is
skipped, so GEMM choices may differ slightly; kernel launch gaps are not counted. A prediction is a plan; the
benchmark on the card is the result.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import importlib.metadata
import re
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from icl_regression import training
from icl_regression.config import RunConfig

COPY_BANDWIDTH = 3.0e12  # bytes/s: the copy rate measured on the real card (the tool's README)
MATMUL_PEAK = 600e12  # FLOP/s: the tool's default, below the 798 TFLOP/s a large bf16 matmul reaches there
POOL_ROWS = 1024  # pool rows of the compiled program (training cost does not depend on M)

_DTYPE_BYTES = {"f32": 4, "bf16": 2, "f16": 2, "s32": 4, "u32": 4, "pred": 1, "s8": 1, "u8": 1, "s64": 8,
                "u64": 8, "f64": 8}
_SHAPE = re.compile(r"\b(f32|bf16|f16|s32|u32|pred|s8|u8|s64|u64|f64)\[([0-9,]*)\]")
_INSTRUCTION = re.compile(r"\s*(?:ROOT )?%([\w.\-]+) = (\([^=]*?\)|\S+) ([a-z\-]+)\((.*?)\)(.*)$")
_SKIPPED_OPS = ("parameter", "get-tuple-element", "tuple", "bitcast", "constant")

# Parts of the model, matched in order on a kernel's op_name (flax module names and the Pallas kernels' names).
PARTS = (
    ("mlp (incl. gelu)", r"mlp_fwd|mlp_dx|mlp_dw|mlp_in|gelu|mlp_out|/block_\d+/(mul|tanh|integer_pow)"),
    ("attention core",
     r"mha_|qkv_attention_|/attn/(vmap|split|concatenate|reshape|transpose)|dot_product_attention"),
    ("layernorm", r"layer_norm_fwd|layer_norm_bwd|ln_"),
    ("attention projections (qkv, out)", r"qkv|attn/out"),
    ("optimizer + finite check", r"optax|adam|_where|/norm"),
)


@dataclasses.dataclass(frozen=True)
class Kernel:
    name: str
    op: str  # fusion, custom-call, copy, …
    op_name: str  # the jax op_name metadata (module path)
    bytes: int  # operands + results
    flops: float  # matrix FLOPs (GEMMs in fusions; Pallas kernels from their shapes)
    custom_call: bool

    @property
    def part(self) -> str:
        for part, pattern in PARTS:
            if re.search(pattern, self.op_name):
                return part
        backward = "transpose(jvp" in self.op_name
        if self.op_name.endswith("closed_call/reduce_sum") and not backward:
            return "optimizer + finite check"
        if "convert_element_type" in self.op_name and not backward:
            return "param casts f32->bf16"
        return "other (sampling, tokens, residual, read_in/out)"


def _shape_bytes(text: str) -> int:
    total = 0
    for dtype, dims in _SHAPE.findall(text):
        total += _DTYPE_BYTES[dtype] * _prod(int(d) for d in dims.split(",") if d)
    return total


def _prod(values) -> int:
    out = 1
    for v in values:
        out *= v
    return out


def _dims(text: str) -> list[list[int]]:
    return [[int(d) for d in dims.split(",") if d] for _, dims in _SHAPE.findall(text)]


def _computations(hlo: str) -> dict[str, list[str]]:
    comps, current = {}, None
    for line in hlo.splitlines():
        match = re.match(r"^(ENTRY )?%?([\w.\-]+) .*\{\s*$", line)
        if match and not line.startswith(" "):
            current = match.group(2)
            comps[current] = []
        elif current and line.startswith("  "):
            comps[current].append(line)
    return comps


def _dot_flops(comps: dict[str, list[str]], name: str) -> float:
    """2 × output size × contracted size of every dot in a computation (and the computations it calls)."""
    lines, flops = comps.get(name, []), 0.0
    shapes = {m.group(1): m.group(2) for m in map(_INSTRUCTION.match, lines) if m}
    for line in lines:
        match = _INSTRUCTION.match(line)
        if match and match.group(3) == "dot":
            lhs = re.findall(r"%([\w.\-]+)", match.group(4))[0]
            lhs_dims = _dims(shapes.get(lhs, ""))[0]
            contracting = re.search(r"lhs_contracting_dims=\{([0-9,]*)\}", line).group(1)
            size = _prod(lhs_dims[int(d)] for d in contracting.split(",") if d)
            flops += 2 * _prod(_dims(match.group(2))[0]) * size
        called = re.search(r"calls=%([\w.\-]+)", line)
        if called and called.group(1) != name:
            flops += _dot_flops(comps, called.group(1))
    return flops


def _custom_call_flops(op_name: str, operand_dims: list[list[int]]) -> float:
    """Matrix FLOPs of the Pallas kernels, from their operands (x [.., N, d] first, W₁ [.., d, H] fifth for the
    MLP kernels; q [.., B, T, H, hd] first for attention, the full T × T square as the kernels compute it)."""
    if re.search(r"mlp_(fwd|dx|dw)", op_name):
        x, w1 = operand_dims[0], operand_dims[3] if "mlp_fwd" in op_name else operand_dims[4]
        rows, width, hidden = _prod(x[:-1]), x[-1], w1[-1]
        matmuls = {"mlp_fwd": 2, "mlp_dx": 3, "mlp_dw": 4}[re.search(r"mlp_(fwd|dx|dw)", op_name).group(0)]
        return 2.0 * rows * width * hidden * matmuls
    if re.search(r"qkv_attention_(fwd|bwd)", op_name):  # operand 0: qkv [.., B, T, 3d]; 2 products fwd, 5 bwd
        qkv = operand_dims[0]
        length, rest = qkv[-2], _prod(qkv[:-2]) * qkv[-1] // 3
        return 2.0 * rest * length * length * (2 if "fwd" in op_name else 5)
    if re.search(r"mha_(forward|backward)", op_name):  # 2 products forward; 5 backward (one recomputed)
        q = operand_dims[0]
        length, rest = q[-3], _prod(q[:-3]) * q[-2] * q[-1]
        return 2.0 * rest * length * length * (2 if "mha_forward" in op_name else 5)
    return 0.0


def step_kernels(hlo: str) -> list[Kernel]:
    """The kernels of one training step: the instructions of the largest while-loop body (the scan over steps)."""
    comps = _computations(hlo)
    bodies = set(re.findall(r"while\(.*?body=%?([\w.\-]+)", hlo))
    if not bodies:
        raise ValueError("no while loop in the program: compile at least 2 steps per call")
    lines = comps[max(bodies, key=lambda b: len(comps.get(b, [])))]
    shapes = {m.group(1): m.group(2) for m in map(_INSTRUCTION.match, lines) if m}
    kernels = []
    for line in lines:
        match = _INSTRUCTION.match(line)
        if not match or match.group(3) in _SKIPPED_OPS:
            continue
        name, shape, op, operands, rest = match.groups()
        operand_shapes = [shapes.get(o, "") for o in re.findall(r"%([\w.\-]+)", operands)]
        op_name = re.search(r'op_name="([^"]*)"', rest)
        op_name = op_name.group(1) if op_name else ""
        custom = op == "custom-call"
        if custom:
            flops = _custom_call_flops(op_name, [d for s in operand_shapes for d in _dims(s)])
        else:
            called = re.search(r"calls=%([\w.\-]+)", rest)
            flops = _dot_flops(comps, called.group(1)) if called else 0.0
        kernels.append(Kernel(name, op, op_name, sum(map(_shape_bytes, operand_shapes)) + _shape_bytes(shape),
                              flops, custom))
    return kernels


def predict(kernels: list[Kernel], ensemble_size: int, bandwidth: float = COPY_BANDWIDTH,
            peak: float = MATMUL_PEAK) -> dict:
    """Roofline time of one step (each kernel: the longer of its bytes over `bandwidth` and its FLOPs over
    `peak`), model-steps/s, and bytes per model-step by part of the model."""
    seconds = sum(max(k.bytes / bandwidth, k.flops / peak) for k in kernels)
    parts = collections.defaultdict(lambda: {"kernels": 0, "bytes": 0, "custom_call_bytes": 0})
    for k in kernels:
        part = parts[k.part]
        part["kernels"] += 1
        part["bytes"] += k.bytes
        part["custom_call_bytes"] += k.bytes if k.custom_call else 0
    total = sum(k.bytes for k in kernels)
    return {
        "kernels_per_step": len(kernels),
        "custom_calls_per_step": sum(k.custom_call for k in kernels),
        "bytes_per_model_step": total / ensemble_size,
        "custom_call_bytes_per_model_step": sum(k.bytes for k in kernels if k.custom_call) / ensemble_size,
        "matmul_flops_per_model_step": sum(k.flops for k in kernels) / ensemble_size,
        "compute_bound_kernels": sum(k.flops / peak > k.bytes / bandwidth for k in kernels),
        "roofline_step_s": seconds,
        "predicted_model_steps_per_s": ensemble_size / seconds,
        "bandwidth": bandwidth, "matmul_peak": peak,
        "parts": {name: {"kernels": p["kernels"], "share": p["bytes"] / total,
                         "mb_per_model_step": p["bytes"] / ensemble_size / 1e6,
                         "custom_call_mb_per_model_step": p["custom_call_bytes"] / ensemble_size / 1e6}
                  for name, p in sorted(parts.items(), key=lambda kv: -kv[1]["bytes"])},
    }


def abstract_device(target_config: Path):
    """A sharding on an abstract GPU described by `target_config` (the tool's target_h100.txtpb)."""
    from jax.experimental import topologies

    text = Path(target_config).read_text()  # a missing file is not a missing plugin
    try:
        topology = topologies.get_topology_desc(platform="cuda", topology="1x1x1", target_config=text)
    except Exception as e:  # no CUDA plugin: the message says what to install
        version = jax.__version__
        raise RuntimeError(f"cannot compile for a CUDA target ({type(e).__name__}: {e}); install the CUDA plugin "
                           f"of this jax, only used to compile: pip install jax-cuda12-plugin=={version} "
                           f"jax-cuda12-pjrt=={version}") from e
    return jax.sharding.SingleDeviceSharding(topology.devices[0])


def compile_train_chunk(cfg: RunConfig, ensemble_size: int, steps_per_call: int, sharding) -> str:
    """The optimized HLO of the engine's training chunk for a vmapped group of `ensemble_size` models."""
    seeds = jnp.arange(ensemble_size, dtype=jnp.int32)
    states = jax.eval_shape(lambda: training.init_group(cfg, seeds))
    members = training.Members(*(jax.ShapeDtypeStruct((ensemble_size,), jnp.int32) for _ in range(3)))
    pools = jax.ShapeDtypeStruct((1, POOL_ROWS, cfg.data.dim), jnp.float32)
    step = jax.ShapeDtypeStruct((), jnp.uint32)
    place = lambda tree: jax.tree.map(  # noqa: E731
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), tree)
    chunk = training.make_train_chunk(cfg, steps_per_call, "vmap")
    # Pallas's Triton lowering asks which GPU it compiles for: from jax 0.11 it reads that from the abstract mesh
    # (without one it finds no GPU and refuses); jax 0.10 ignores it and reads the sharding's device.
    mesh = jax.sharding.Mesh(np.array([next(iter(sharding.device_set))]), ("target",))
    with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
        return chunk.lower(*place((states, members, pools, step))).compile().as_text()


def roofline_record(cfg: RunConfig, ensemble_size: int, steps_per_call: int, target_config: Path,
                    hlo_out: Path | None = None) -> dict:
    """Compiles the training chunk for the target and returns the prediction as a JSON-ready record."""
    sharding = abstract_device(target_config)
    start = time.perf_counter()
    hlo = compile_train_chunk(cfg, ensemble_size, steps_per_call, sharding)
    compile_s = time.perf_counter() - start
    if hlo_out is not None:
        Path(hlo_out).parent.mkdir(parents=True, exist_ok=True)
        Path(hlo_out).write_text(hlo)
    kernels = step_kernels(hlo)
    return {
        "kind": "prediction (roofline of the program compiled for an abstract H100; not a measurement)",
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "target": str(target_config), "jax": importlib.metadata.version("jax"),
        "path": cfg.model.fast_path, "ensemble_size": ensemble_size, "steps_per_call": steps_per_call,
        "batch_size": cfg.train.batch_size, "config": cfg.to_dict(), "compile_s": compile_s,
        **predict(kernels, ensemble_size),
    }


def _task_shape(dim: int, context_len: int) -> list[str]:
    """["D<dim>", "K<K>"], or [] for the study's default task shape (D = 8, K = 16), which names leave out."""
    default = RunConfig().data
    return [] if (dim, context_len) == (default.dim, default.context_len) else [f"D{dim}", f"K{context_len}"]


def record_name(size: str, cfg: RunConfig, ensemble_size: int) -> str:
    """The file stem of a prediction: size, D and K where they are not the default (8, 16), batch, ensemble, path."""
    return "_".join([size, *_task_shape(cfg.data.dim, cfg.data.context_len), f"B{cfg.train.batch_size}",
                     f"E{ensemble_size}", cfg.model.fast_path])


def format_line(name: str, record: dict) -> str:
    """One line per prediction: model-steps/s, bytes per model-step, kernels, and the three largest parts."""
    parts = ", ".join(f"{part} {p['share']:.0%}" for part, p in list(record["parts"].items())[:3])
    return (f"{name}: {record['predicted_model_steps_per_s']:,.0f} model-steps/s predicted, "
            f"{record['bytes_per_model_step'] / 1e9:.2f} GB/model-step, {record['kernels_per_step']} kernels/step "
            f"({record['custom_calls_per_step']} custom calls), compiled in {record['compile_s']:.0f} s; {parts}")


def markdown_table(records: list[dict]) -> str:
    """The predictions as a markdown table: one row per compute path, one column pair per (size, D and K, batch,
    ensemble): GB moved per model-step and predicted model-steps/s (with the ratio to float32)."""
    def setting(r):
        model, data = r["config"]["model"], r["config"]["data"]
        return (model["num_layers"], model["d_model"], data["dim"], data["context_len"], r["batch_size"],
                r["ensemble_size"])

    def title(s):
        return " ".join([f"L{s[0]}", f"d{s[1]}", *_task_shape(s[2], s[3]), f"B{s[4]}", f"E{s[5]}:"]) + (
            " GB/model-step, model-steps/s")

    settings = sorted({setting(r) for r in records}, key=lambda s: (-s[1], s[2], s[4]))
    paths = sorted({r["path"] for r in records}, key=lambda p: (p != "float32", len(p), p))
    by_key = {(setting(r), r["path"]): r for r in records}
    header = "| path | " + " | ".join(title(s) for s in settings) + " |"
    lines = [header, "|---" * (len(settings) + 1) + "|"]
    for path in paths:
        cells = []
        for s in settings:
            r, base = by_key.get((s, path)), by_key.get((s, "float32"))
            if r is None:
                cells.append("")
                continue
            ratio = f" ({r['predicted_model_steps_per_s'] / base['predicted_model_steps_per_s']:.2f}×)" if base else ""
            cells.append(f"{r['bytes_per_model_step'] / 1e9:.2f}, {r['predicted_model_steps_per_s']:,.0f}{ratio}")
        lines.append(f"| {path} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


PREDICTED_MODEL_FIELDS = ("num_layers", "d_model", "num_heads", "compute_dtype", "attention", "mlp", "layer_norm")


def _predicts(prediction: dict, config: dict, figures: dict) -> bool:
    """Whether a roofline `prediction` is of the program a benchmark timed (`figures`, under the benchmark's
    `config`): the same model and compute path, data shape, batch and ensemble size, and vmapped models (the
    roofline compiles a vmapped group)."""
    model, data = prediction["config"]["model"], prediction["config"]["data"]
    return (figures["strategy"] == "vmap" and figures["num_members"] == prediction["ensemble_size"]
            and config["train"]["batch_size"] == prediction["batch_size"]
            and all(data[k] == config["data"][k] for k in ("dim", "context_len"))
            and all(model[k] == figures["model"][k] for k in PREDICTED_MODEL_FIELDS))


def measured_against_predicted(record: dict, predictions: list[dict]) -> list[dict]:
    """For each path a benchmark `record` timed (the float32 group, then each fast path) that one of `predictions`
    (roofline records) is of: the predicted rate, that rate scaled by the record's measured copy rate over the
    bandwidth the prediction assumed (exact where the kernels stay memory-bound), the measured rate and its ratio
    to the scaled prediction."""
    copy = (record.get("copy") or {}).get("bytes_per_s")
    rows = []
    for figures in [record["train"], *record["fast"]]:
        for p in predictions:
            if _predicts(p, record["config"], figures):
                scale = copy / p["bandwidth"] if copy else None
                here = p["predicted_model_steps_per_s"] * scale if scale else None
                rows.append({"path": figures["path"], "predicted": p["predicted_model_steps_per_s"],
                             "predicted_bandwidth": p["bandwidth"], "copy_scale": scale, "predicted_here": here,
                             "measured": figures["model_steps_per_s"],
                             "measured_over_predicted_here": figures["model_steps_per_s"] / here if here else None,
                             "compute_bound_kernels": p["compute_bound_kernels"]})
                break
    return rows


def format_comparison(rows: list[dict]) -> str:
    """The rows of `measured_against_predicted` as text, one line per path."""
    if not rows:
        return "roofline: no prediction of these shapes (experiments/roofline.py writes them)"
    lines = ["roofline: predicted model-steps/s (H100 bytes at the prediction's bandwidth), scaled by this card's "
             "copy rate, against measured"]
    for r in rows:
        scaled = "n/a" if r["predicted_here"] is None else f"{r['predicted_here']:,.0f} (× {r['copy_scale']:.3g})"
        ratio = "" if r["measured_over_predicted_here"] is None else f" = {r['measured_over_predicted_here']:.2f}×"
        bound = f"; {r['compute_bound_kernels']} compute-bound kernels" if r["compute_bound_kernels"] else ""
        lines.append(f"  predicted {r['path']}: {r['predicted']:,.0f} → {scaled} here, measured "
                     f"{r['measured']:,.0f}{ratio}{bound}")
    return "\n".join(lines)
