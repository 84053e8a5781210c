"""Typed, frozen, validated configuration: where a config file's dictionary enters the library.

Experiment config files (`experiments/configs/*.py`) build ml_collections ConfigDicts for the command line;
`run_config_from_dict` turns one into a `RunConfig` and rejects bad values with a message that names the value
and what is allowed.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import importlib.util
import json
import math
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterable, Mapping, Sequence

INFINITE_TASKS = 0  # num_tasks = 0 (or "inf") means a fresh Gaussian task per sequence.
MAX_NUM_TASKS = 2**31 - 1  # M is an int32 on device (pool indices, the data stream's keys)

MODEL_SIZES = {  # (num_layers, d_model, num_heads) of the study's models.
    "small": (4, 64, 2),
    "base": (8, 128, 2),
    "large": (12, 256, 4),
}


class ConfigError(ValueError):
    """A configuration value is out of range; the message names it and what is allowed."""


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_num_tasks(value: Any) -> int:
    """M as an int, with 0 for M = ∞; accepts 0, "inf", "infinity", float('inf')."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("inf", "infinity", "∞"):
            return INFINITE_TASKS
        try:
            value = int(text)
        except ValueError:
            raise ConfigError(f"data.num_tasks={value!r} is not a number; allowed: an integer M >= 1, or 0 / 'inf' for M = ∞")
    if isinstance(value, float):
        if math.isinf(value) and value > 0:
            return INFINITE_TASKS
        if not value.is_integer():
            raise ConfigError(f"data.num_tasks={value!r} is not a whole number; allowed: an integer M >= 1, or 0 / 'inf'")
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(f"data.num_tasks={value!r} has type {type(value).__name__}; allowed: int >= 0 or 'inf'")
    _require(value >= 0, f"data.num_tasks={value} is negative; allowed: an integer M >= 1, or 0 / 'inf' for M = ∞")
    _require(value <= MAX_NUM_TASKS, f"data.num_tasks={value} is too large; allowed: an integer M <= 2^31 - 1 "
             "(M is an int32 on device), or 0 / 'inf' for M = ∞")
    return value


def num_tasks_label(num_tasks: int) -> str:
    return "inf" if num_tasks == INFINITE_TASKS else str(num_tasks)


TASK_PRIORS = ("gaussian", "laplace")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    dim: int = 8  # D, task and input dimension
    context_len: int = 16  # K, (x, y) pairs per sequence
    noise_std: float = 0.5  # σ (σ² = 0.25 in the paper)
    task_scale: float = 1.0  # τ, tasks w ~ N(0, τ² I)
    num_tasks: int = 0  # M, size of the pretraining pool; 0 = ∞
    nested_pools: bool = True  # pool for M = first M rows of one pool per seed (else a fresh pool per M)
    # Distribution of every task (pool rows, fresh tasks at M = ∞, the T_true evaluation set): "gaussian",
    # w ~ N(0, τ²I), or "laplace", i.i.d. Laplace(0, τ/√2) coordinates (the same variance τ², heavier tails). With
    # "laplace", T_true is that Laplace prior, ridge (λ = σ²/τ²) is the best *linear* estimator but no longer the
    # Bayes one (that is estimators.laplace_preds), and the "dmmse" metric of M = ∞ runs is ridge.
    task_prior: str = "gaussian"

    def __post_init__(self):
        object.__setattr__(self, "num_tasks", parse_num_tasks(self.num_tasks))
        _require(_is_int(self.dim) and self.dim >= 1, f"data.dim={self.dim!r}; allowed: an integer D >= 1")
        _require(_is_int(self.context_len) and self.context_len >= 1,
                 f"data.context_len={self.context_len!r}; allowed: an integer K >= 1")
        _require(0 < self.noise_std < math.inf, f"data.noise_std={self.noise_std!r}; allowed: a finite float > 0 "
                 "(the Bayes estimators and the dMMSE likelihood need noise)")
        _require(0 < self.task_scale < math.inf, f"data.task_scale={self.task_scale!r}; allowed: a finite float > 0")
        _require(self.task_prior in TASK_PRIORS,
                 f"data.task_prior={self.task_prior!r}; allowed: {', '.join(map(repr, TASK_PRIORS))}")

    @property
    def ridge_lambda(self) -> float:
        """λ = σ²/τ², the ridge penalty that makes ridge the Bayes estimator."""
        return self.noise_std**2 / self.task_scale**2

    @property
    def laplace_scale(self) -> float:
        """b of the Laplace task prior: Laplace(0, b) has variance 2b², so b = τ/√2 matches the Gaussian's τ²."""
        return self.task_scale * 2.0**-0.5


# Allowed values of ModelConfig's fast-path fields (the first is the default).
FAST_PATH_CHOICES = {"attention": ("xla", "cudnn", "pallas", "fused"), "mlp": ("xla", "fused"), "layer_norm": ("xla", "fused")}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    num_layers: int = 8
    d_model: int = 128
    num_heads: int = 2
    compute_dtype: str = "float32"  # "float32" or "bfloat16" (parameters, optimiser and loss stay float32)
    # The fast training path (experiments/PERFORMANCE.md); evaluation always runs float32 / xla (`for_evaluation`).
    attention: str = "xla"  # "xla"; "cudnn": cuDNN fused attention where available (bf16 on a GPU), else XLA;
    #                         "pallas": JAX's Pallas flash-attention kernel (Triton on CUDA, interpret elsewhere);
    #                         "fused": this project's Pallas kernel reading the packed qkv (no layout copies)
    mlp: str = "xla"  # "xla", or "fused": Pallas LayerNorm → MLP → residual kernel, hidden layer recomputed
    layer_norm: str = "xla"  # "xla", or "fused": Pallas LayerNorm kernel (the MLP's own LN is in the MLP kernel)

    def __post_init__(self):
        _require(_is_int(self.num_layers) and self.num_layers >= 1,
                 f"model.num_layers={self.num_layers!r}; allowed: an integer >= 1")
        _require(_is_int(self.num_heads) and self.num_heads >= 1,
                 f"model.num_heads={self.num_heads!r}; allowed: an integer >= 1")
        _require(_is_int(self.d_model) and self.d_model >= 1 and self.d_model % self.num_heads == 0,
                 f"model.d_model={self.d_model!r} must be a positive multiple of model.num_heads={self.num_heads}")
        _require(self.compute_dtype in ("float32", "bfloat16"),
                 f"model.compute_dtype={self.compute_dtype!r}; allowed: 'float32', 'bfloat16'")
        for name, allowed in FAST_PATH_CHOICES.items():
            _require(getattr(self, name) in allowed,
                     f"model.{name}={getattr(self, name)!r}; allowed: {', '.join(map(repr, allowed))}")
        # Triton tiles have power-of-two sides of at least 16: the width for the MLP and LayerNorm kernels, the
        # head size for the attention kernel.
        for name, size, what in (("mlp", self.d_model, "d_model"), ("layer_norm", self.d_model, "d_model"),
                                 ("attention", self.d_model // self.num_heads, "d_model / num_heads")):
            if getattr(self, name) == "fused":
                _require(size >= 16 and size & (size - 1) == 0,
                         f"model.{name}='fused' with {what} = {size}; allowed: {what} a power of two >= 16, or "
                         f"model.{name}='xla'")

    def for_evaluation(self) -> "ModelConfig":
        """This model on the plain path: float32, XLA attention, MLP and LayerNorm (same parameters)."""
        return dataclasses.replace(self, compute_dtype="float32", attention="xla", mlp="xla", layer_norm="xla")

    @property
    def fast_path(self) -> str:
        """A short label of the compute path, e.g. `float32` or `bfloat16+cudnn+fused_mlp+fused_ln`."""
        parts = [self.compute_dtype]
        if self.attention != "xla":
            parts.append("fused_attn" if self.attention == "fused" else self.attention)
        if self.mlp == "fused":
            parts.append("fused_mlp")
        if self.layer_norm == "fused":
            parts.append("fused_ln")
        return "+".join(parts)


# The whole fast training path, as a `ModelConfig.fast_path` label ("fast" on the command line): every kernel of
# this project (the best H100 prediction, experiments/PERFORMANCE.md; cuDNN attention is the alternative to measure).
FAST_PATH = "bfloat16+fused_attn+fused_mlp+fused_ln"
_FAST_PATH_PARTS = {"cudnn": ("attention", "cudnn"), "pallas": ("attention", "pallas"),
                    "fused_attn": ("attention", "fused"),
                    "fused_mlp": ("mlp", "fused"), "fused_ln": ("layer_norm", "fused")}


def fast_path_overrides(label: str) -> dict:
    """The model fields a `ModelConfig.fast_path` label names, e.g. "bfloat16+cudnn+fused_mlp" (or "fast")."""
    dtype, *parts = (FAST_PATH if label == "fast" else label).split("+")
    _require(dtype in ("float32", "bfloat16"), f"compute path {label!r} must start with 'float32' or 'bfloat16'")
    fields = {"compute_dtype": dtype, "attention": "xla", "mlp": "xla", "layer_norm": "xla"}
    for part in parts:
        _require(part in _FAST_PATH_PARTS, f"compute path {label!r}: unknown part {part!r}; allowed: "
                 f"{', '.join(_FAST_PATH_PARTS)} (joined by '+'), or 'fast' = {FAST_PATH}")
        field, value = _FAST_PATH_PARTS[part]
        fields[field] = value
    return fields


SCHEDULES = ("triangle", "cosine", "constant")
ENSEMBLE_STRATEGIES = ("auto", "vmap", "map")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    steps: int = 500_000
    batch_size: int = 256
    learning_rate: float = 1e-3
    schedule: str = "triangle"  # "triangle" (warm-up then linear decay to 0), "cosine", "constant"
    warmup_fraction: float = 0.5
    weight_decay: float = 0.0  # decoupled, on attention and MLP matrices only
    adam_b1: float = 0.9
    adam_b2: float = 0.999
    adam_eps: float = 1e-8
    seed: int = 0
    steps_per_call: int = 100  # training steps per compiled call
    ensemble_strategy: str = "auto"  # how a group of models shares one program: auto / vmap / map

    def __post_init__(self):
        _require(_is_int(self.steps) and self.steps >= 1, f"train.steps={self.steps!r}; allowed: an integer >= 1")
        _require(_is_int(self.batch_size) and self.batch_size >= 1,
                 f"train.batch_size={self.batch_size!r}; allowed: an integer >= 1")
        _require(0 < self.learning_rate < math.inf,
                 f"train.learning_rate={self.learning_rate!r}; allowed: a finite float > 0")
        _require(self.schedule in SCHEDULES, f"train.schedule={self.schedule!r}; allowed: {', '.join(SCHEDULES)}")
        _require(0 <= self.warmup_fraction <= 1, f"train.warmup_fraction={self.warmup_fraction!r}; allowed: [0, 1]")
        _require(self.schedule == "constant" or self.warmup_steps < self.steps,
                 f"train.warmup_fraction={self.warmup_fraction!r} warms up over all {self.steps} steps, leaving none "
                 f"for the {self.schedule} schedule to decay over; allowed: a fraction whose warm-up "
                 f"round(fraction × steps) is under train.steps")
        _require(0 <= self.weight_decay < math.inf,
                 f"train.weight_decay={self.weight_decay!r}; allowed: a finite float >= 0")
        for name in ("adam_b1", "adam_b2"):  # decay rates of Adam's moment averages
            _require(0 <= getattr(self, name) < 1, f"train.{name}={getattr(self, name)!r}; allowed: a float in [0, 1)")
        _require(0 < self.adam_eps < math.inf, f"train.adam_eps={self.adam_eps!r}; allowed: a finite float > 0")
        _require(_is_int(self.seed) and 0 <= self.seed < 2**31,
                 f"train.seed={self.seed!r}; allowed: an integer in [0, 2^31)")
        _require(_is_int(self.steps_per_call) and self.steps_per_call >= 1,
                 f"train.steps_per_call={self.steps_per_call!r}; allowed: an integer >= 1")
        _require(self.ensemble_strategy in ENSEMBLE_STRATEGIES,
                 f"train.ensemble_strategy={self.ensemble_strategy!r}; allowed: {', '.join(ENSEMBLE_STRATEGIES)}")

    @property
    def warmup_steps(self) -> int:
        """Steps of linear warm-up (triangle and cosine schedules): the nearest integer to warmup_fraction × steps."""
        return int(round(self.warmup_fraction * self.steps))


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    interval: int = 5_000  # evaluate every this many steps (and at the last step)
    num_sequences: int = 4_096  # evaluation sequences per distribution
    batch_size: int = 1_024  # sequences per model forward pass during evaluation
    dmmse_block: int = 1_024  # tasks per block when streaming dMMSE over the pool
    num_bootstrap: int = 200  # bootstrap replicates of the final Δ over evaluation sequences
    seed: int = 0  # seed of the evaluation streams (disjoint from every training stream)
    # Bootstrap replicates over evaluation sequences of the dynamics metrics (Δ^{T_true}_{PT,Ridge}, L/D of PT on
    # T_true, ridge weight a), stored at every evaluation: the evaluation-noise part of the t* intervals. 32, not
    # num_bootstrap: about 1 KB per evaluation, and enough to estimate that (small) part (icl_regression/dynamics.py).
    num_bootstrap_per_eval: int = 32

    def __post_init__(self):
        for name in ("interval", "num_sequences", "batch_size", "dmmse_block"):
            value = getattr(self, name)
            _require(_is_int(value) and value >= 1, f"eval.{name}={value!r}; allowed: an integer >= 1")
        for name in ("num_bootstrap", "num_bootstrap_per_eval"):
            value = getattr(self, name)
            _require(_is_int(value) and value >= 0, f"eval.{name}={value!r}; allowed: an integer >= 0")
        _require(self.num_sequences % min(self.batch_size, self.num_sequences) == 0,
                 f"eval.num_sequences={self.num_sequences} is not a multiple of eval.batch_size={self.batch_size}")


@dataclasses.dataclass(frozen=True)
class CheckpointConfig:
    interval: int = 25_000  # steps between checkpoints (also written at each stop)
    keep: int = 2  # newest checkpoints kept per run

    def __post_init__(self):
        _require(_is_int(self.interval) and self.interval >= 1,
                 f"checkpoint.interval={self.interval!r}; allowed: an integer >= 1")
        _require(_is_int(self.keep) and self.keep >= 1, f"checkpoint.keep={self.keep!r}; allowed: an integer >= 1")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    checkpoint: CheckpointConfig = dataclasses.field(default_factory=CheckpointConfig)

    def __post_init__(self):
        # The fused attention kernel holds a whole sequence of 2K tokens (x and y interleaved) in one Triton tile,
        # whose sides must be powers of two (checked by compiling for an H100; interpret mode on a CPU takes any).
        tokens = 2 * self.data.context_len
        _require(self.model.attention != "fused" or tokens & (tokens - 1) == 0,
                 f"model.attention='fused' with data.context_len={self.data.context_len} (sequences of {tokens} "
                 "tokens); allowed: a context length whose 2K is a power of two (4, 8, 16, 32, …), or another "
                 "model.attention ('xla', 'cudnn', 'pallas')")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **sections: Mapping[str, Any]) -> "RunConfig":
        """A copy with fields replaced, e.g. `cfg.replace(data={"num_tasks": 4})`."""
        return run_config_from_dict(_deep_update(self.to_dict(), sections))

    def hashed_dict(self) -> dict:
        """The fields that name a run: every field, except later additions that still hold their default."""
        values = self.to_dict()
        for section, fields in FIELDS_ADDED_LATER.items():
            default = _SECTIONS[section]()
            for field in fields:
                if values[section][field] == getattr(default, field):
                    del values[section][field]
        return values

    @property
    def short_hash(self) -> str:
        text = json.dumps(self.hashed_dict(), sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:6]

    @property
    def run_name(self) -> str:
        """Readable folder name plus a short hash of the whole config, e.g. `M=4096_B=256_seed=0-1a2b3c`."""
        return (f"M={num_tasks_label(self.data.num_tasks)}_B={self.train.batch_size}_N={self.train.steps}"
                f"_seed={self.train.seed}-{self.short_hash}")


# Fields added after results were first committed, per section. While such a field holds its default it is left out
# of the run's hash, so adding a field never renames (and so never orphans) the runs already stored; a stored
# config.json without it reads as the default (`run_config_from_dict`). Append new fields here.
FIELDS_ADDED_LATER: dict[str, tuple[str, ...]] = {
    "data": ("task_prior",),
    "model": ("attention", "mlp", "layer_norm"),
    "eval": ("num_bootstrap_per_eval",),
}

_SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig, "eval": EvalConfig,
             "checkpoint": CheckpointConfig}


# Top-level sections besides the run's, read by other parts: the sweep (its grid) and experiments/landscape.py.
OTHER_SECTIONS = ("sweep", "landscape")


def run_config_from_dict(config: Mapping[str, Any]) -> RunConfig:
    """Builds a RunConfig from a (nested) mapping; unknown keys are errors, missing ones take defaults.

    The sections of `OTHER_SECTIONS` are not checked here: they belong to the sweep and the landscape.
    """
    allowed = [*_SECTIONS, *OTHER_SECTIONS]
    for name in config:
        _require(name in allowed, f"unknown config section {name}{suggest(name, allowed, list_allowed=True)}")
    sections = {}
    for name, cls in _SECTIONS.items():
        values = config.get(name, {}) or {}
        _require_section(name, values, cls)
        values = dict(values)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(fields))
        _require(not unknown, f"unknown {name} field(s) {unknown}; allowed: {sorted(fields)}")
        for field, value in values.items():
            _check_type(f"{name}.{field}", value, fields[field].type)
        sections[name] = cls(**values)
    return RunConfig(**sections)


def not_a_section(name: str, value: Any, example: str) -> ConfigError:
    """The error for a value where section `name` belongs, e.g. `data=3` (`example`: a field assignment in it)."""
    return ConfigError(f"{name}={value!r}: {name} is a section; set one of its fields, e.g. {name}.{example}")


def _require_section(name: str, value: Any, cls: type) -> None:
    """Refuses a scalar where a section (a mapping of `cls`'s fields) belongs, e.g. `data=3`."""
    if not isinstance(value, Mapping):
        raise not_a_section(name, value, f"{dataclasses.fields(cls)[0].name}=...")


def suggest(key: str, allowed: Iterable[str], prefix: Sequence[str] = (), list_allowed: bool = False) -> str:
    """What to add to 'unknown <prefix>.<key>': '; did you mean <prefix>.<closest>?' (followed by every allowed key
    with `list_allowed`), or '; <prefix> has <allowed>' when none is close."""
    allowed = sorted(allowed)
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    path = ".".join(prefix)
    listed = f"{path or 'the config'} has {', '.join(allowed)}"
    if close:
        return f"; did you mean {path + '.' if path else ''}{close[0]}?" + (f" ({listed})" if list_allowed else "")
    return f"; {listed}"


def dotted_fields(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"section.field": value} of a nested config mapping (lists and other values are leaves)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            out.update(dotted_fields(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def same_run_config(stored: Mapping[str, Any], config: Mapping[str, Any]) -> bool:
    """Whether a stored config.json and a config describe the same run (fields missing from either read as their
    defaults, so a run stored before a field was added still matches)."""
    try:
        return run_config_from_dict(stored) == run_config_from_dict(config)
    except ConfigError:
        return False


def model_size(name: str) -> dict:
    """The model section for a named size of the study: small, base or large."""
    _require(name in MODEL_SIZES, f"model size {name!r}; allowed: {', '.join(MODEL_SIZES)}")
    layers, width, heads = MODEL_SIZES[name]
    return {"num_layers": layers, "d_model": width, "num_heads": heads}


def _check_type(name: str, value: Any, annotation: str) -> None:
    """Rejects a value whose type cannot be the field's (a string learning rate, a boolean batch size)."""
    if annotation == "float":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif annotation == "int" and not name.endswith("num_tasks"):
        ok = _is_int(value)
    elif annotation == "bool":
        ok = isinstance(value, bool)
    elif annotation == "str":
        ok = isinstance(value, str)
    else:
        ok = True
    _require(ok, f"{name}={value!r} has type {type(value).__name__}; allowed: {annotation}")


def _deep_update(base: dict, updates: Mapping[str, Any]) -> dict:
    out = dict(base)
    for key, value in updates.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _deep_update(out[key], value)
        else:
            out[key] = value
    return out


def config_file(path: str | Path) -> ModuleType:
    """Experiment config file `path` as a module (config files are loaded by path, not imported; one that builds on
    another loads it with `config_file(Path(__file__).with_name("other.py"))`)."""
    path = Path(path)
    spec = importlib.util.spec_from_file_location(f"_icl_config_{abs(hash(str(path.resolve())))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def config_variant(variant: str, builders: Mapping[str, Callable[[], Any]]):
    """The config of `variant` (the text after ':' in `--config=file.py:variant`), built by `builders[variant]`; ''
    builds the first. Any other name is a ValueError naming the allowed ones."""
    name = variant or next(iter(builders))
    if name not in builders:
        raise ValueError(f"unknown variant {variant!r}; allowed: {', '.join(repr(n) for n in builders)}")
    return builders[name]()


def base_config():
    """The paper's defaults as an ml_collections ConfigDict (documented field by field in the dataclasses above).

    Experiment config files start from this and override what they change. Without ml_collections (the GPU
    machine has none) it is `configdict.ConfigDict`, which does what the config files need.
    """
    try:
        from ml_collections import ConfigDict
    except ImportError:
        from icl_regression.configdict import ConfigDict

    return ConfigDict(RunConfig().to_dict())
