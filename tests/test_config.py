"""Configuration: bad values are rejected with a message naming them; names, hashes and replace."""

import hashlib
import json
import re

import pytest

from icl_regression import config
from icl_regression.config import ConfigError, run_config_from_dict


@pytest.mark.parametrize("section, field, value", [
    ("data", "num_tasks", -3),
    ("data", "num_tasks", "-7"),
    ("data", "num_tasks", 2.5),
    ("data", "num_tasks", "lots"),
    ("data", "context_len", 0),
    ("data", "context_len", -4),
    ("data", "dim", 0),
    ("data", "noise_std", -0.5),
    ("data", "task_scale", 0.0),
    ("model", "d_model", 30),  # not divisible by the 4 heads below
    ("model", "num_layers", 0),
    ("model", "compute_dtype", "float16"),
    ("train", "schedule", "linear_warmup"),
    ("train", "steps", 0),
    ("train", "learning_rate", -1e-3),
    ("train", "warmup_fraction", 1.5),
    ("train", "warmup_fraction", 1.0),  # a warm-up over every step leaves none to decay over (cosine: optax's error)
    ("train", "ensemble_strategy", "pmap"),
    ("train", "learning_rate", float("inf")),  # every float that is checked must also be finite
    ("train", "weight_decay", float("inf")),
    ("data", "noise_std", float("inf")),
    ("data", "task_scale", float("inf")),
    ("train", "learning_rate", float("nan")),
    ("train", "adam_b1", 2.0),
    ("train", "adam_b2", -1.0),
    ("train", "adam_b2", 1.0),
    ("train", "adam_eps", -1.0),
    ("train", "adam_eps", 0.0),
    ("data", "num_tasks", 2**31),  # M is an int32 on device
    ("train", "seed", 2**31),  # so are the seeds
    ("train", "seed", -1),
    ("eval", "num_sequences", 300),  # not a multiple of the batch size 256 below
    ("eval", "interval", 0),
    ("checkpoint", "keep", 0),
])
def test_bad_values_raise_config_error_naming_field_and_value(section, field, value):
    sections = {"model": {"num_heads": 4}, "eval": {"batch_size": 256}}
    sections.setdefault(section, {})[field] = value
    with pytest.raises(ConfigError) as error:
        run_config_from_dict(sections)
    message = str(error.value)
    assert field in message, message
    assert str(value) in message, message


def test_a_warm_up_over_every_step_is_refused_unless_the_rate_is_constant():
    for schedule in ("triangle", "cosine"):
        with pytest.raises(ConfigError, match=r"warmup_fraction=0\.95 warms up over all 10 steps"):
            config.TrainConfig(steps=10, schedule=schedule, warmup_fraction=0.95)
        assert config.TrainConfig(steps=10, schedule=schedule, warmup_fraction=0.9).warmup_steps == 9
    assert config.TrainConfig(steps=10, schedule="constant", warmup_fraction=1.0).warmup_steps == 10  # unused


@pytest.mark.parametrize("section", ["data", "model", "train", "eval", "checkpoint"])
def test_unknown_fields_are_errors(section):
    with pytest.raises(ConfigError) as error:
        run_config_from_dict({section: {"num_taks": 3}})
    assert "num_taks" in str(error.value) and section in str(error.value)


@pytest.mark.parametrize("key, message", [
    ("trian", r"unknown config section trian; did you mean train\? \(the config has checkpoint, data, eval, landscape, "
              r"model, sweep, train\)"),
    ("optimiser", r"unknown config section optimiser; the config has checkpoint, data, eval, landscape, model, sweep"),
], ids=["close", "far"])
def test_an_unknown_section_is_an_error_naming_it_and_the_allowed_ones(key, message):
    """Before, a mistyped section was ignored and its fields took their defaults."""
    with pytest.raises(ConfigError, match=message):
        run_config_from_dict({key: {"steps": 5}})
    assert run_config_from_dict({"sweep": {"grid": {}}, "landscape": {}}) == config.RunConfig()  # read elsewhere


@pytest.mark.parametrize("value", [3, "x", (1, 2)])
def test_a_section_set_to_a_value_is_an_error(value):
    with pytest.raises(ConfigError, match=r"data=.+: data is a section; set one of its fields, e\.g\. data\.dim="):
        run_config_from_dict({"data": value})


def test_eval_size_mismatch_names_both_fields():
    with pytest.raises(ConfigError, match=r"eval\.num_sequences=1000 .*eval\.batch_size=256"):
        run_config_from_dict({"eval": {"num_sequences": 1000, "batch_size": 256}})
    # A batch as large as the whole set (or larger) is fine.
    assert run_config_from_dict({"eval": {"num_sequences": 100, "batch_size": 256}}).eval.num_sequences == 100


@pytest.mark.parametrize("value", ["inf", "infinity", "Inf", " INFINITY ", "∞", float("inf"), 0, "0"])
def test_infinite_num_tasks_is_zero(value):
    assert run_config_from_dict({"data": {"num_tasks": value}}).data.num_tasks == config.INFINITE_TASKS == 0


@pytest.mark.parametrize("value, expected", [(1, 1), (4096, 4096), ("64", 64), (2.0**20, 2**20),
                                             (2**31 - 1, 2**31 - 1)])
def test_finite_num_tasks_is_an_int(value, expected):
    num_tasks = run_config_from_dict({"data": {"num_tasks": value}}).data.num_tasks
    assert num_tasks == expected and type(num_tasks) is int


def test_a_num_tasks_over_int32_names_the_bound():
    with pytest.raises(ConfigError, match=r"data\.num_tasks=1000000000000 is too large; allowed: an integer M <= "
                                          r"2\^31 - 1"):
        run_config_from_dict({"data": {"num_tasks": 1e12}})


def test_defaults_are_the_papers():
    cfg = config.RunConfig()
    assert (cfg.data.dim, cfg.data.context_len, cfg.data.noise_std**2) == (8, 16, 0.25)
    assert cfg.data.ridge_lambda == pytest.approx(0.25)
    assert (cfg.model.num_layers, cfg.model.d_model, cfg.model.num_heads) == config.MODEL_SIZES["base"]
    assert (cfg.train.batch_size, cfg.train.steps, cfg.train.learning_rate) == (256, 500_000, 1e-3)
    assert (cfg.train.schedule, cfg.train.warmup_fraction) == ("triangle", 0.5)
    assert run_config_from_dict({}) == cfg


def test_run_name_has_m_b_seed_and_a_short_hash(tiny_config):
    cfg = tiny_config.replace(data={"num_tasks": 4096}, train={"batch_size": 512, "seed": 3})
    match = re.fullmatch(r"M=4096_B=512_.*seed=3-([0-9a-f]{6})", cfg.run_name)
    assert match, cfg.run_name
    assert match.group(1) == cfg.short_hash
    assert tiny_config.replace(data={"num_tasks": "inf"}).run_name.startswith("M=inf_")
    # The hash covers every field, and equal configs share it.
    assert cfg.replace(model={"d_model": 64}).short_hash != cfg.short_hash
    assert cfg.replace(eval={"seed": 1}).short_hash != cfg.short_hash
    assert run_config_from_dict(cfg.to_dict()).run_name == cfg.run_name


def test_replace_returns_a_validated_copy(tiny_config):
    other = tiny_config.replace(data={"num_tasks": 4}, train={"learning_rate": 3e-3})
    assert other.data.num_tasks == 4 and other.train.learning_rate == 3e-3
    assert tiny_config.data.num_tasks == 0 and tiny_config.train.learning_rate == 1e-3  # the original is untouched
    assert other.model == tiny_config.model and other.eval == tiny_config.eval
    assert other.data.dim == tiny_config.data.dim and other.train.steps == tiny_config.train.steps
    assert tiny_config.replace(data={"num_tasks": "inf"}).data.num_tasks == 0
    with pytest.raises(ConfigError, match="num_tasks=-1"):
        tiny_config.replace(data={"num_tasks": -1})
    with pytest.raises(ConfigError, match="bogus"):
        tiny_config.replace(train={"bogus": 1})
    with pytest.raises(Exception):  # frozen
        tiny_config.data.num_tasks = 3


def test_model_size_presets():
    assert config.model_size("small") == {"num_layers": 4, "d_model": 64, "num_heads": 2}
    assert run_config_from_dict({"model": config.model_size("large")}).model.d_model == 256
    with pytest.raises(ConfigError, match="huge"):
        config.model_size("huge")


def test_config_round_trips_through_a_dict(tiny_config):
    assert run_config_from_dict(tiny_config.to_dict()) == tiny_config


@pytest.mark.parametrize("section, field, value", [
    ("data", "noise_std", 0.0),
    ("train", "learning_rate", "1e-3"),
    ("train", "learning_rate", True),
    ("data", "noise_std", "0.5"),
    ("train", "batch_size", 64.0),
    ("train", "seed", 2**32),
    ("model", "compute_dtype", 16),
])
def test_values_of_the_wrong_type_or_range_name_the_field(section, field, value):
    with pytest.raises(config.ConfigError, match=f"{section}.{field}={value!r}".replace("(", r"\(").replace(
            ")", r"\)").replace("+", r"\+").replace(".", r"\.", 1)):
        config.run_config_from_dict({section: {field: value}})


def test_fields_added_later_do_not_rename_stored_runs(tiny_config, monkeypatch):
    """A field appended to FIELDS_ADDED_LATER is left out of the hash while it holds its default, so runs stored
    before it existed keep their folder names; a non-default value still names a different run."""
    stored = tiny_config.hashed_dict()  # without the fields already added later (at their defaults)
    del stored["train"]["ensemble_strategy"]  # as a config.json written before the field existed would read
    before = hashlib.sha1(json.dumps(stored, sort_keys=True).encode()).hexdigest()[:6]
    monkeypatch.setitem(config.FIELDS_ADDED_LATER, "train", ("ensemble_strategy",))
    assert tiny_config.short_hash == before
    assert run_config_from_dict(stored).run_name == tiny_config.run_name
    assert tiny_config.replace(train={"ensemble_strategy": "map"}).short_hash != before
    assert config.same_run_config(stored, tiny_config.to_dict())
    assert not config.same_run_config(stored, tiny_config.replace(train={"seed": 1}).to_dict())


def test_committed_sweeps_match_their_configs():
    """Every run folder of a committed sweep is a cell of its stored sweep config under today's code: a config
    change that renamed cells would leave committed results orphaned and their sweeps pending."""
    from icl_regression import sweep
    from conftest import COMMITTED_SWEEPS

    for name, workdir in COMMITTED_SWEEPS.items():
        stored = json.loads((workdir / "sweep_config.json").read_text())
        cells = {c.name for c in sweep.expand(stored, workdir)}
        on_disk = {p.name for p in (workdir / "runs").iterdir() if p.is_dir()}
        assert cells == on_disk, name


def test_task_prior_is_validated_and_the_default_keeps_run_names():
    with pytest.raises(config.ConfigError, match=r"data\.task_prior='cauchy'; allowed: 'gaussian', 'laplace'"):
        run_config_from_dict({"data": {"task_prior": "cauchy"}})
    gaussian = run_config_from_dict({"data": {"task_prior": "gaussian"}})
    assert gaussian.run_name == config.RunConfig().run_name  # the default stays out of the hash: stored runs keep names
    assert run_config_from_dict({"data": {"task_prior": "laplace"}}).run_name != gaussian.run_name
    assert gaussian.data.laplace_scale == pytest.approx(2**-0.5)
