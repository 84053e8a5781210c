"""Multi-device placement: a group trained over 4 (forced CPU) devices equals the same group on one device.

The training runs happen in one subprocess with `XLA_FLAGS=--xla_force_host_platform_device_count=4` (set
before jax starts; see ECOSYSTEM.md for why not `jax_num_cpu_devices`) and a timeout: the reference is the
engine's single-device path (no placement: one device, `map` over members), the others spread the same group
over 4 devices. The tests below read its JSON report. Layout choice and work sharding are plain Python and are
tested in-process.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from icl_regression import parallel

from conftest import REPO_ROOT

# The subprocesses share the tests' persistent compilation cache (or the one the environment names).
CACHE_ENV = {"JAX_COMPILATION_CACHE_DIR": os.environ.get("JAX_COMPILATION_CACHE_DIR", str(REPO_ROOT / ".jax_cache")),
             "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}

NUM_DEVICES = 4
RELATIVE_TOLERANCE = 1e-5

SCRIPT = textwrap.dedent("""
    import json, sys, tempfile
    from pathlib import Path

    import jax
    import jax.numpy as jnp

    from icl_regression import engine, parallel
    from icl_regression.config import run_config_from_dict

    BASE = {
        "data": {"dim": 4, "context_len": 8},
        "model": {"num_layers": 2, "d_model": 32, "num_heads": 2},
        "train": {"steps": 60, "batch_size": 64, "steps_per_call": 30, "ensemble_strategy": "auto"},
        "eval": {"interval": 30, "num_sequences": 128, "batch_size": 128, "num_bootstrap": 0},
        "checkpoint": {"interval": 60},
    }
    # Four members that differ in M and seed: one compiled program, as in a sweep.
    MEMBERS = [(4, 0), (16, 1), (64, 0), (0, 2)]
    cfgs = [run_config_from_dict({**BASE, "data": {**BASE["data"], "num_tasks": m},
                                  "train": {**BASE["train"], "seed": s}}) for m, s in MEMBERS]
    ROOT = tempfile.mkdtemp()

    def train(name, placement):
        dirs = [Path(ROOT) / name / str(i) for i in range(len(cfgs))]
        trainer = engine.GroupTrainer(cfgs, dirs, placement)
        with jax.transfer_guard_device_to_device("disallow" if placement is not None else "allow"):
            trainer.run()  # pools and shared evaluation sets are placed once, not copied out at every call
        return {"strategy": trainer.strategy,
                "layout": None if placement is None else [placement.members_size, placement.data_size],
                "summaries": [json.loads((d / "summary.json").read_text()) for d in dirs],
                "eval_flops_per_device": evaluation_flops(trainer)}

    def evaluation_flops(trainer):
        # The evaluator as the trainer compiled it (no bootstrap here), lowered for the group's arrays as they are
        # placed (set up again from the finished runs, whose summaries are already read): XLA's count of one
        # device's floating-point operations.
        group = trainer._setup()
        evaluator = trainer._evaluators[False]
        cost = evaluator.lower(group.states.params, *group.eval_arrays).compile().cost_analysis()
        return (cost[0] if isinstance(cost, list) else cost)["flops"]

    def vmap_constraint_check():
        # One member's [B, D] batch constrained to P('data') inside vmap over members, on a 2 x 2 mesh.
        placement = parallel.Placement(parallel.mesh_of(jax.devices(), 2, 2))
        def member_loss(w, x):
            x = jax.lax.with_sharding_constraint(x, placement.batch_sharding(x.ndim))
            return jnp.mean(jnp.square(x @ w))
        w = jax.random.normal(jax.random.key(0), (4, 3, 5))
        x = jax.random.normal(jax.random.key(1), (4, 8, 3))
        expected = jax.jit(jax.vmap(jax.grad(member_loss)))(w, x)  # on one device
        fn = jax.jit(jax.vmap(jax.grad(member_loss)))
        w_p, x_p = placement.place_members((w, x))
        got = fn(w_p, x_p)
        return {"max_abs_diff": float(jnp.max(jnp.abs(got - expected))),
                "member_axis_split": got.sharding.spec[0] == "members",
                "constraint_leaves_member_axis_free": '[{?}, {"data"}, {}]' in fn.lower(w_p, x_p).as_text()}

    def error_message():
        try:
            parallel.make_placement(3, 5)
        except ValueError as err:
            return str(err)

    assert jax.device_count() == 4, jax.devices()
    fallback = parallel.placement_for_group(3, 5)
    report = {
        "vmap_constraint": vmap_constraint_check(),
        "error": error_message(),
        "fallback_layout": [fallback.members_size, fallback.data_size],
        # The reference: no placement is the engine's single-device path (strategy `map` on CPU).
        "single": train("single", None),
        "members": train("members", parallel.make_placement(4, 64)),
        "data": train("data", parallel.make_placement(4, 64, prefer="data")),
    }
    print("REPORT " + json.dumps(report))
""")


@pytest.fixture(scope="module")
def report() -> dict:
    env = {**os.environ, **CACHE_ENV, "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": f"--xla_force_host_platform_device_count={NUM_DEVICES}"}
    result = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO_ROOT, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("REPORT "))
    return json.loads(line[len("REPORT "):])


def _assert_same_summaries(expected: list[dict], got: list[dict]) -> None:
    for member, (a, b) in enumerate(zip(expected, got)):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=RELATIVE_TOLERANCE), member
        assert a["final"].keys() == b["final"].keys()
        for key, value in a["final"].items():
            assert b["final"][key] == pytest.approx(value, rel=RELATIVE_TOLERANCE, nan_ok=True), (member, key)


def test_members_layout_matches_single_device(report):
    assert report["single"]["layout"] is None and report["single"]["strategy"] == "map"
    assert report["members"]["layout"] == [NUM_DEVICES, 1]
    assert report["members"]["strategy"] == "vmap"
    _assert_same_summaries(report["single"]["summaries"], report["members"]["summaries"])


def test_data_layout_matches_single_device(report):
    assert report["data"]["layout"] == [1, NUM_DEVICES]
    _assert_same_summaries(report["single"]["summaries"], report["data"]["summaries"])


def test_data_layout_splits_evaluation_over_devices(report):
    # Four members over 4 devices: one member per device on 'members'; on 'data' every device evaluates all four
    # members, so each must take a quarter of the sequences to do the same work (it did all of them, 4×, before).
    members, data = (report[name]["eval_flops_per_device"] for name in ("members", "data"))
    assert data < 1.5 * members, (members, data)


def test_batch_constraint_composes_with_vmap_over_members(report):
    check = report["vmap_constraint"]
    assert check["constraint_leaves_member_axis_free"], "vmap no longer marks the member axis unconstrained"
    assert check["member_axis_split"]
    assert check["max_abs_diff"] < 1e-5


def test_non_dividing_layout_names_sizes_and_a_fix(report):
    message = report["error"]
    assert message is not None
    for text in ("num_members=3", "batch_size=5", "4 devices", "multiple of 4", "3 device(s)"):
        assert text in message


def test_sweep_placement_falls_back_to_fewer_devices(report):
    assert report["fallback_layout"] == [3, 1]


@pytest.mark.parametrize("members, batch, prefer, expected", [
    (8, 256, "members", (4, 1)),
    (8, 256, "data", (1, 4)),
    (2, 64, "members", (1, 4)),  # members do not divide: everything on data
    (4, 6, "data", (4, 1)),  # batch does not divide: everything on members
    (2, 6, "members", (2, 2)),  # neither divides alone: the split with most devices on members
])
def test_choose_layout(members, batch, prefer, expected):
    assert parallel.choose_layout(members, batch, 4, prefer) == expected


def test_choose_layout_rejects_bad_preference():
    with pytest.raises(ValueError, match="prefer"):
        parallel.choose_layout(4, 4, 4, prefer="model")


def test_single_device_needs_no_placement():
    assert parallel.make_placement(4, 64, devices=["only-device"]) is None


def test_process_shard_partitions_the_cells():
    cells = list(range(11))
    shards = [parallel.process_shard(cells, i, 3) for i in range(3)]
    assert sorted(sum(shards, [])) == cells
    assert [len(s) for s in shards] == [4, 4, 3]
    assert parallel.process_shard(cells) == cells  # one process: everything
    with pytest.raises(ValueError, match="process_index"):
        parallel.process_shard(cells, 3, 3)


@pytest.mark.parametrize("shard", [None, (0, 1), (1, 3), (2, 5)])
def test_compose_shard_splits_a_shard_between_processes(shard):
    cells = list(range(60))
    index, count = shard or (0, 1)
    mine = [j for j in cells if j % count == index]
    parts = []
    for p in range(4):
        i, n = parallel.compose_shard(shard, p, 4)
        parts.append([j for j in cells if j % n == i])
    assert sorted(sum(parts, [])) == mine
    assert parts == [parallel.process_shard(mine, p, 4) for p in range(4)]


def test_a_split_layout_puts_the_most_devices_on_members():
    """With 8 devices, 4 members and batch 4 neither pure layout divides; (4, 2) and (2, 4) both fit and the
    documented choice is the one with the most devices on 'members' (no communication between them)."""
    assert parallel.choose_layout(4, 4, 8) == (4, 2)
    assert parallel.choose_layout(4, 4, 8, prefer="data") == (4, 2)


def test_members_are_checked_against_the_members_axis_not_every_device():
    """On a data-only mesh (1 × 2) any number of members fits; checking against all devices refuses 3."""
    script = textwrap.dedent("""
        import jax, jax.numpy as jnp
        from icl_regression import parallel
        placement = parallel.Placement(parallel.mesh_of(jax.devices()[:2], 1, 2))
        placed = placement.place_members({"w": jnp.zeros((3, 2))})
        print(placed["w"].shape)
    """)
    env = {**os.environ, **CACHE_ENV, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "(3, 2)" in proc.stdout
