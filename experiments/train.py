r"""Trains one model into <workdir>/runs/<run name>/ (config, metrics, summary, checkpoints).

On a 2-core CPU, about a minute (the CPU reference setting's tiny model at one M):

    python experiments/train.py --config=experiments/configs/cpu_reference.py --workdir=runs/single --config.data.num_tasks=8

The paper's base model is a GPU job (500k steps; about 23 minutes on an H100 at 361 steps/s):

    python experiments/train.py --config=experiments/configs/default.py --workdir=runs/base --config.data.num_tasks=4096

Ctrl-C, SIGTERM or --stop_after=25m stop it cleanly (a checkpoint at the current step) and print the command that
resumes it. `python experiments/sweep.py --summarize --workdir=runs/single` summarises and draws its runs.
"""

from absl import flags

from icl_regression import cli, names, stopping
from icl_regression.config import run_config_from_dict

_CONFIG = flags.DEFINE_string("config", None, "Run config file, path[:variant]. Override any field with "
                              "--config.<section>.<field>=value (fields: icl_regression/config.py).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder whose runs/ receives the run folder.")
_STOP_AFTER = flags.DEFINE_string("stop_after", None, "Stop cleanly after this wall time (e.g. 90s, 25m, 1.5h): "
                                  "checkpoint, print how to resume, exit 0.")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Print the run folder, its cost and a time estimate; train nothing.")
_CACHE = flags.DEFINE_string("compilation_cache", "", "Persistent compilation cache folder (default: "
                             "$JAX_COMPILATION_CACHE_DIR or <workdir>/.jax_cache; 'none' turns it off).")


def main(overrides, stop: stopping.Stop):
    cfg = run_config_from_dict(cli.load_config(_CONFIG.value, overrides))
    if _STOP_AFTER.value:
        stop.set_deadline(stopping.parse_duration(_STOP_AFTER.value))
    workdir = cli.check_workdir(_WORKDIR.value, create=not _DRY_RUN.value)
    run_dir = workdir / names.RUNS_DIR / cfg.run_name
    if _DRY_RUN.value:
        return _plan(cfg, run_dir)
    cli.configure_compilation_cache(_CACHE.value, workdir)
    from icl_regression import engine  # jax: only once the signal handlers and the cache are in place

    summary = engine.train_run(cfg, run_dir, progress=engine.RunProgressPrinter(), stop=stop, print_fn=print)
    if summary is None:
        print(engine.stopped_message([run_dir], stop.reason, cli.rerun_command()))
        return
    print(f"{run_dir}: {summary['status']}, final "
          + ", ".join(f"{k}={v:.4f}" for k, v in summary["final"].items() if k.startswith(names.TRUE)))


def _plan(cfg, run_dir) -> None:
    from icl_regression import sweep

    per_step = sweep.train_flops_per_step(sweep.Cell(cfg, run_dir))
    print(f"{run_dir}: {cfg.train.steps:,} steps, {per_step * cfg.train.steps / 1e12:,.1f} TFLOP; "
          + sweep.describe_estimate(per_step * cfg.train.steps, per_step, run_dir.parent.parent))


if __name__ == "__main__":
    cli.run(main)
