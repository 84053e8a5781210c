"""The Pallas kernels (interpret mode on CPU) against the plain JAX path: forward and gradients, under vmap over an
ensemble axis; and the fast path of the model around them (same parameters, float32 evaluation)."""

from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from icl_regression import evaluation, landscape, rng, trained, training
from icl_regression import model as model_module
from icl_regression.config import ConfigError, EvalConfig, ModelConfig, run_config_from_dict
from icl_regression.kernels import attention as kernels_attention
from icl_regression.kernels import layer_norm as kernels_layer_norm
from icl_regression.kernels import mlp as kernels_mlp
from icl_regression.model import Transformer

ENSEMBLE = 2
# "exact" float32 tolerances hold in interpret mode; on a GPU, Triton's and XLA's float32 products may use TF32,
# so a GPU session runs `-k "not exact"` (experiments/gpu_session.sh).
DTYPES = [pytest.param(jnp.float32, 2e-5, id="exact_float32"), pytest.param(jnp.bfloat16, 0.03, id="bfloat16")]
# (rows, width): rows not a multiple of a tile (padding), one or two blocks of hidden units, one or four row splits
# in the weight-gradient kernel.
SHAPES = [(36, 32), (500, 16)]


def _mlp_inputs(rows, width, seed=0):
    """Per-member inputs [E, …] of the MLP half of a block, with LayerNorm parameters away from 1 and 0."""
    keys = jax.random.split(jax.random.key(seed), 8)
    e, hidden = ENSEMBLE, 4 * width
    normal = lambda k, shape, std: std * jax.random.normal(k, (e, *shape))  # noqa: E731
    return {"x": normal(keys[0], (rows, width), 1.0), "ln_scale": 1 + normal(keys[1], (width,), 0.2),
            "ln_bias": normal(keys[2], (width,), 0.2), "w1": normal(keys[3], (width, hidden), 0.2),
            "b1": normal(keys[4], (hidden,), 0.2), "w2": normal(keys[5], (hidden, width), 0.2),
            "b2": normal(keys[6], (width,), 0.2), "cotangent": normal(keys[7], (rows, width), 1.0)}


def _plain_mlp(dtype):
    """The model's plain path for the MLP half of a block (flax LayerNorm, Dense, gelu), one member."""
    def apply(x, ln_scale, ln_bias, w1, b1, w2, b2):
        normed = nn.LayerNorm(epsilon=1e-5, dtype=dtype).apply({"params": {"scale": ln_scale, "bias": ln_bias}}, x)
        hidden = nn.gelu(nn.Dense(w1.shape[1], dtype=dtype).apply({"params": {"kernel": w1, "bias": b1}}, normed),
                         approximate=True)
        return x + nn.Dense(w2.shape[1], dtype=dtype).apply({"params": {"kernel": w2, "bias": b2}}, hidden)
    return apply


def _fused_mlp(dtype):
    """The fused kernel as the model calls it: matrices cast to the compute dtype, vectors float32."""
    def apply(x, ln_scale, ln_bias, w1, b1, w2, b2):
        return kernels_mlp.mlp_block(x, ln_scale, ln_bias, w1.astype(dtype), b1, w2.astype(dtype), b2)
    return apply


def _layer_norm_inputs(mlp_inputs):
    """The LayerNorm's share of `_mlp_inputs`: x, its scale and bias, and the cotangent."""
    return {"x": mlp_inputs["x"], "scale": mlp_inputs["ln_scale"], "bias": mlp_inputs["ln_bias"],
            "cotangent": mlp_inputs["cotangent"]}


def _plain_layer_norm(dtype):
    def apply(x, scale, bias):
        return nn.LayerNorm(epsilon=1e-5, dtype=dtype).apply({"params": {"scale": scale, "bias": bias}}, x)
    return apply


def _value_and_grads(fn, inputs, dtype):
    """Outputs and gradients of ⟨fn(args), cotangent⟩ for every member (vmap over the ensemble axis), as float32."""
    names = [n for n in inputs if n != "cotangent"]

    def member(args, cotangent):
        def objective(*a):
            out = fn(a[0].astype(dtype), *a[1:])
            return jnp.sum(out.astype(jnp.float32) * cotangent), out
        (_, out), grads = jax.value_and_grad(objective, argnums=tuple(range(len(names))), has_aux=True)(*args)
        return out, grads

    out, grads = jax.jit(jax.vmap(member))(tuple(inputs[n] for n in names), inputs["cotangent"])
    return {"out": out, **dict(zip(names, grads))}


def _assert_close(fast, plain, exact, atol_scale):
    """Every output of `fast` within `atol_scale` × (largest entry of the exact values) of `plain`."""
    for name in exact:
        scale = float(np.abs(np.asarray(exact[name], np.float32)).max())
        err = float(np.abs(np.asarray(fast[name], np.float32) - np.asarray(plain[name], np.float32)).max())
        assert err <= atol_scale * scale, f"{name}: max error {err:.3g} > {atol_scale} × {scale:.3g}"


@pytest.mark.parametrize("rows, width", SHAPES)
def test_fused_mlp_matches_the_plain_path_in_exact_float32(rows, width):
    inputs = _mlp_inputs(rows, width)
    fused = _value_and_grads(_fused_mlp(jnp.float32), inputs, jnp.float32)
    plain = _value_and_grads(_plain_mlp(jnp.float32), inputs, jnp.float32)
    _assert_close(fused, plain, plain, 2e-5)


@pytest.mark.parametrize("rows, width", SHAPES)
def test_fused_mlp_in_bfloat16_is_as_close_to_float32_as_the_plain_bfloat16_path(rows, width):
    inputs = _mlp_inputs(rows, width, seed=1)
    exact = _value_and_grads(_plain_mlp(jnp.float32), inputs, jnp.float32)
    fused = _value_and_grads(_fused_mlp(jnp.bfloat16), inputs, jnp.bfloat16)
    plain = _value_and_grads(_plain_mlp(jnp.bfloat16), inputs, jnp.bfloat16)
    assert fused["out"].dtype == jnp.bfloat16 and fused["w1"].dtype == jnp.float32
    _assert_close(fused, exact, exact, 0.03)  # bfloat16 keeps 8 bits: ~0.4% per rounding, a few roundings deep
    for name in exact:  # and no further from float32 than XLA's bfloat16 path (it accumulates in float32)
        fused_err = np.abs(np.asarray(fused[name], np.float32) - np.asarray(exact[name])).max()
        plain_err = np.abs(np.asarray(plain[name], np.float32) - np.asarray(exact[name])).max()
        assert fused_err <= 1.5 * plain_err + 1e-6, (name, fused_err, plain_err)


@pytest.mark.parametrize("rows, width", SHAPES)
@pytest.mark.parametrize("dtype, tolerance", DTYPES)
def test_fused_layer_norm_matches_the_plain_path(rows, width, dtype, tolerance):
    inputs = _layer_norm_inputs(_mlp_inputs(rows, width, seed=2))
    exact = _value_and_grads(_plain_layer_norm(jnp.float32), inputs, jnp.float32)
    fused = _value_and_grads(kernels_layer_norm.layer_norm, inputs, dtype)
    plain = _value_and_grads(_plain_layer_norm(dtype), inputs, dtype)
    assert fused["out"].dtype == dtype and fused["scale"].dtype == jnp.float32
    _assert_close(fused, plain, exact, tolerance)
    _assert_close(fused, exact, exact, tolerance)


def _attention_inputs(seed: int) -> dict:
    """Per-member queries, keys, values and the output's cotangent, each [E, B, T, H, hd]."""
    keys = jax.random.split(jax.random.key(seed), 4)
    return dict(zip(("q", "k", "v", "cotangent"), (jax.random.normal(key, (ENSEMBLE, 3, 16, 2, 16)) for key in keys)))


def _xla_attention(q, k, v):
    """The plain path: XLA's causal attention, keys and values in the queries' dtype."""
    return jax.nn.dot_product_attention(q, k.astype(q.dtype), v.astype(q.dtype), is_causal=True)


@pytest.mark.parametrize("dtype, tolerance", DTYPES)
def test_pallas_flash_attention_matches_xla_attention(dtype, tolerance):
    inputs = _attention_inputs(3)

    def pallas(q, k, v):
        return kernels_attention.flash_attention(q, k.astype(q.dtype), v.astype(q.dtype))

    exact = _value_and_grads(_xla_attention, inputs, jnp.float32)
    _assert_close(_value_and_grads(pallas, inputs, dtype), exact, exact, tolerance)


def test_cudnn_attention_matches_xla_attention(caplog, monkeypatch):
    """`model.attention='cudnn'` in bfloat16 under vmap over the ensemble, values and gradients, against float32 XLA
    attention. On a GPU it must take cuDNN's fused kernel (its custom call in the compiled program); elsewhere it
    falls back to XLA's attention, saying so once."""
    inputs = _attention_inputs(5)

    def cudnn(q, k, v):
        return model_module.causal_attention(q, k.astype(q.dtype), v.astype(q.dtype), "cudnn")

    monkeypatch.setattr(model_module, "_LOGGED", set())
    with caplog.at_level("WARNING", logger=model_module.log.name):
        fast = _value_and_grads(cudnn, inputs, jnp.bfloat16)
    exact = _value_and_grads(_xla_attention, inputs, jnp.float32)
    _assert_close(fast, exact, exact, 0.03)
    program = jax.jit(cudnn).lower(*(inputs[name][0].astype(jnp.bfloat16) for name in ("q", "k", "v")))
    if jax.default_backend() == "gpu":
        assert "cudnn" in program.compile().as_text().lower(), "cuDNN attention was not used on the GPU"
    else:
        assert any("model.attention='cudnn' unavailable" in r.getMessage() for r in caplog.records), caplog.text
        _assert_close(fast, _value_and_grads(_xla_attention, inputs, jnp.bfloat16), exact, 0.0)  # the XLA path


@pytest.mark.parametrize("dtype, tolerance", DTYPES)
def test_qkv_attention_matches_xla_attention_on_the_split_heads(dtype, tolerance):
    batch, length, heads, head_dim = 3, 16, 2, 16
    width = heads * head_dim
    keys = jax.random.split(jax.random.key(4), 3)
    inputs = {"qkv": jax.random.normal(keys[0], (ENSEMBLE, batch, length, 3 * width)),
              "bias": jax.random.normal(keys[1], (ENSEMBLE, 3 * width)),
              "cotangent": jax.random.normal(keys[2], (ENSEMBLE, batch, length, width))}

    def xla(qkv, bias):  # the model's plain path: add the bias, split the packed heads, attend, merge the heads
        qkv = qkv + bias.astype(qkv.dtype)
        q, k, v = jnp.split(qkv.reshape(batch, length, 3 * heads, head_dim), 3, axis=2)
        return jax.nn.dot_product_attention(q, k, v, is_causal=True).reshape(batch, length, width)

    exact = _value_and_grads(xla, inputs, jnp.float32)
    fused = _value_and_grads(lambda qkv, bias: kernels_attention.qkv_attention(qkv, bias, heads), inputs, dtype)
    assert fused["out"].dtype == dtype and fused["bias"].dtype == jnp.float32
    _assert_close(fused, exact, exact, tolerance)


FAST = {"compute_dtype": "bfloat16", "attention": "cudnn", "mlp": "fused", "layer_norm": "fused"}
STEP_CONFIG = {"data": {"dim": 4, "context_len": 8, "num_tasks": 4},
               "model": {"num_layers": 1, "d_model": 32, "num_heads": 2},
               "train": {"steps": 10, "batch_size": 8, "schedule": "constant", "seed": 0}}


@pytest.mark.parametrize("attention", ["cudnn", "fused"])
def test_every_path_initialises_the_same_parameters(attention):
    xs, ys = jnp.zeros((1, 8, 4)), jnp.zeros((1, 8))
    key = rng.stream_key(0, rng.Stream.INIT)
    plain = Transformer(ModelConfig(num_layers=2, d_model=32)).init(key, xs, ys)
    fast = Transformer(ModelConfig(num_layers=2, d_model=32, **{**FAST, "attention": attention})).init(key, xs, ys)
    assert jax.tree.structure(plain) == jax.tree.structure(fast)
    for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(fast)):
        assert a.dtype == b.dtype == jnp.float32
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_fast_training_steps_track_the_float32_path():
    """Two whole training steps (sampling, fused kernels, Adam) of a vmapped group of two models stay close to
    float32 (the cuDNN fallback and the `map` strategy take the same code paths as tested elsewhere)."""
    def run(model_overrides):
        cfg = run_config_from_dict({**STEP_CONFIG, "model": {**STEP_CONFIG["model"], **model_overrides}})
        states = training.init_group(cfg, [0, 1])
        members = training.Members(jnp.asarray([0, 1]), jnp.asarray([4, 0]), jnp.zeros(2, jnp.int32))
        pools = jnp.zeros((1, 4, 4)).at[0].set(jax.random.normal(jax.random.key(0), (4, 4)))
        states, metrics = training.make_train_chunk(cfg, 2, "vmap")(states, members, pools, jnp.uint32(0))
        return states, metrics

    initial = jax.tree.leaves(training.init_group(run_config_from_dict(STEP_CONFIG), [0, 1]).params)
    exact_states, exact = run({})
    fast_states, fast = run({**FAST, "attention": "fused"})
    assert not np.any(np.asarray(fast["diverged"]))
    np.testing.assert_allclose(np.asarray(fast["loss_mean"]), np.asarray(exact["loss_mean"]), rtol=0.02)
    floating = [leaf for leaf in jax.tree.leaves(fast_states) if jnp.issubdtype(leaf.dtype, jnp.floating)]
    assert all(leaf.dtype == jnp.float32 for leaf in floating)  # parameters and Adam's moments stay float32
    # Adam moves every parameter by about ±lr whatever its gradient's size, so a parameter whose gradient is
    # rounding noise (the key bias has an exactly zero gradient) moves at random on either path: compare the
    # whole update instead, per member.
    def updates(states):
        return np.concatenate([(np.asarray(a) - np.asarray(b)).reshape(2, -1)
                               for a, b in zip(jax.tree.leaves(states.params), initial)], axis=1)
    fast_update, exact_update = updates(fast_states), updates(exact_states)
    cosine = np.sum(fast_update * exact_update, 1) / np.linalg.norm(fast_update, axis=1) / np.linalg.norm(
        exact_update, axis=1)
    assert np.all(cosine > 0.95), cosine


def test_evaluation_runs_the_plain_float32_path_whatever_the_training_path():
    cfg = run_config_from_dict(STEP_CONFIG)
    params = training.init_group(cfg, [0]).params
    eval_cfg = EvalConfig(num_sequences=16, batch_size=16, num_bootstrap=0)
    bank = evaluation.EvalBank(cfg.data, eval_cfg)
    per_member, shared = evaluation.stack_member_sets([bank.sets_for(evaluation.PoolId(0), 4)])
    results = [evaluation.make_group_evaluator(Transformer(ModelConfig(**STEP_CONFIG["model"], **overrides)),
                                               eval_cfg, "vmap", with_bootstrap=False)(params, per_member, shared, None)
               for overrides in ({}, FAST)]
    for key, plain in results[0][0].items():
        np.testing.assert_array_equal(np.asarray(results[1][0][key]), np.asarray(plain), err_msg=key)


def test_analyses_of_trained_models_predict_on_the_plain_float32_path():
    """Interpolation, the Laplace comparison and the landscape re-run a trained model: on its float32 path, as
    its stored evaluations were (through bfloat16 they missed their own stored metrics by 0.3%)."""
    plain = run_config_from_dict(STEP_CONFIG)
    fast = plain.replace(model={**FAST, "attention": "fused"})
    params = jax.tree.map(lambda x: x[0], training.init_group(plain, [0]).params)
    xs, ys = jax.random.normal(jax.random.key(1), (2, 16, 8, 4))[0], jax.random.normal(jax.random.key(2), (16, 8))

    def run(cfg):
        return trained.TrainedRun("r", cfg, Path("r"), params, "checkpoint", Path("r"))

    np.testing.assert_array_equal(np.asarray(trained.model_preds(run(fast), xs, ys)),
                                  np.asarray(trained.model_preds(run(plain), xs, ys)))
    settings = landscape.LandscapeSettings(num_points=3, num_sequences=32, batch_size=32)
    paths = [landscape.landscape_between(cfg, params, cfg.replace(data={"num_tasks": 0}), params, settings)
             for cfg in (fast, plain)]
    assert paths[0] == paths[1]


@pytest.mark.parametrize("overrides, message", [
    ({"attention": "flash"}, "model.attention='flash'"),
    ({"compute_dtype": "float16"}, "model.compute_dtype='float16'"),
    ({"mlp": "pallas"}, "model.mlp='pallas'"),
    ({"layer_norm": "fused", "d_model": 48}, "model.layer_norm='fused' with d_model = 48"),
    ({"attention": "fused", "d_model": 16}, "model.attention='fused' with d_model / num_heads = 8"),
])
def test_fast_path_settings_are_validated(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        ModelConfig(**{"num_heads": 2, **overrides})


def test_fused_attention_needs_a_power_of_two_sequence_length():
    """Triton refuses a tile of 2K = 12 tokens when compiling for a GPU (interpret mode on a CPU does not)."""
    with pytest.raises(ConfigError, match=r"model.attention='fused' with data.context_len=6 \(sequences of 12"):
        run_config_from_dict({"data": {"context_len": 6}, "model": {"attention": "fused"}})
    run_config_from_dict({"data": {"context_len": 8}, "model": {"attention": "fused"}})
    run_config_from_dict({"data": {"context_len": 6}, "model": {"attention": "pallas"}})  # JAX's kernel pads


def test_fast_path_fields_at_their_defaults_keep_stored_run_names():
    plain = run_config_from_dict(STEP_CONFIG)
    assert "attention" not in plain.hashed_dict()["model"]
    fast = plain.replace(model={"mlp": "fused"})
    assert fast.hashed_dict()["model"]["mlp"] == "fused" and fast.short_hash != plain.short_hash
    assert fast.model.for_evaluation() == plain.model and fast.model.fast_path == "float32+fused_mlp"


def test_fused_layer_norm_uses_the_models_epsilon_on_small_variance_rows():
    """At unit variance ε = 1e-5 vs 1e-6 moves the output by ~5e-6 (inside every tolerance); rows of variance
    ~1e-6 (a residual stream that is nearly constant) show it at once."""
    x = 1e-3 * jax.random.normal(jax.random.key(0), (8, 16))
    scale, bias = jnp.ones(16), jnp.zeros(16)
    np.testing.assert_allclose(np.asarray(kernels_layer_norm.layer_norm(x, scale, bias)),
                               np.asarray(_plain_layer_norm(jnp.float32)(x, scale, bias)), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("rows", [70, 17])  # 70 = 64 + 6, 17 = 16 + 1: fewer padding rows than half a tile
def test_fused_kernels_cover_every_row_when_the_remainder_is_small(rows):
    """Rows past the last whole tile are computed too, forward and backward (SHAPES' remainders hid a wrong
    padding sign)."""
    inputs = _mlp_inputs(rows, 16, seed=3)
    plain = _value_and_grads(_plain_mlp(jnp.float32), inputs, jnp.float32)
    _assert_close(_value_and_grads(_fused_mlp(jnp.float32), inputs, jnp.float32), plain, plain, 2e-5)
    inputs = _layer_norm_inputs(inputs)
    plain = _value_and_grads(_plain_layer_norm(jnp.float32), inputs, jnp.float32)
    _assert_close(_value_and_grads(kernels_layer_norm.layer_norm, inputs, jnp.float32), plain, plain, 2e-5)
