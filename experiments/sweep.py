"""Runs a diversity sweep (or this process's slice of it), then prints the table and the threshold.

    python experiments/sweep.py --config=experiments/configs/cpu_demo.py --workdir=runs/cpu_demo
    python experiments/sweep.py --config=experiments/configs/paper_small.py --workdir=runs/paper_small --shard=0/4
    python experiments/sweep.py --config=... --workdir=... --dry_run       # the plan, its cost and time estimate
    python experiments/sweep.py --workdir=... --summarize                  # table, threshold, figures from disk
    python experiments/sweep.py --config=... --workdir=... --stop_after=25m  # checkpoint and exit 0 by then

Finished cells are skipped and interrupted ones resume from their checkpoints: rerunning the same command after a
crash, a kill, Ctrl-C, SIGTERM or --stop_after completes the sweep without redoing finished work. Grid values are
overridable like any field: --config.sweep.grid.data.num_tasks=1,4,16,inf.
"""

from absl import flags

from icl_regression import cli, names, stopping

_CONFIG = flags.DEFINE_string("config", None, "Sweep config file, path[:variant]. Override any field with "
                              "--config.<section>.<field>=value. With --summarize: default the sweep's stored "
                              "sweep_config.json.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Sweep folder (run folders, index, summary, figures).")
_SHARD = flags.DEFINE_string("shard", None, "Train only slice i of n of the grid, as 'i/n'.")
_CELLS = flags.DEFINE_list("cells", None, "Train only these cells (run folder names).")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Print the plan, its cost and a time estimate; train nothing.")
_SUMMARIZE = flags.DEFINE_bool("summarize", False, "Only summarise what is on disk (no training).")
_MAX_GROUP = flags.DEFINE_integer("max_group_size", 0, "Models per compiled program (0: all that fit a group).")
_MULTIHOST = flags.DEFINE_bool("multihost", False, "Call jax.distributed.initialize(); each host takes its cells.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "With --multihost: host:port of process 0 "
                                   "(default: read from the cluster environment).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "With --multihost: number of processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "With --multihost: this process's index.")
_EXTEND = flags.DEFINE_bool("extend", False, "Accept a config that differs from the folder's stored one (its cells "
                            "are added beside the old ones; sweep_config_history.jsonl keeps every config).")
_STOP_AFTER = flags.DEFINE_string("stop_after", None, "Stop cleanly after this wall time (e.g. 90s, 25m, 1.5h): "
                                  "checkpoint every unfinished model, update the index, exit 0.")
_CACHE = flags.DEFINE_string("compilation_cache", "", "Persistent compilation cache folder (default: "
                             "$JAX_COMPILATION_CACHE_DIR or <workdir>/.jax_cache; 'none' turns it off).")
_FIGURE = flags.DEFINE_bool("figure", True, "Write the sweep, dynamics and per-position figures (PNG, PDF) into "
                             "<workdir>/figures.")


def main(overrides, stop: stopping.Stop):
    _check_process_flags()
    if _STOP_AFTER.value:
        stop.set_deadline(stopping.parse_duration(_STOP_AFTER.value))
    if _SUMMARIZE.value:
        return _report(_summarize(overrides), cli.check_workdir(_WORKDIR.value, create=False))
    config = cli.load_config(_CONFIG.value, overrides)
    workdir = cli.check_workdir(_WORKDIR.value, create=not _DRY_RUN.value)
    if not _DRY_RUN.value:
        cli.configure_compilation_cache(_CACHE.value, workdir)
    from icl_regression import parallel, sweep  # jax: only once the signal handlers and the cache are in place

    shard = sweep.parse_shard(_SHARD.value) if _SHARD.value else None
    if _MULTIHOST.value:
        try:
            shard = parallel.initialize_multihost(shard, **_multihost_args())
        except ValueError as e:  # jax's: no cluster environment it knows, or arguments it refuses
            raise cli.UsageError(f"--multihost: jax.distributed.initialize() failed ({str(e).rstrip('.')}); outside "
                                 "a cluster jax detects (SLURM, Open MPI, Cloud TPU, ...) pass "
                                 "--coordinator_address=host:port, --num_processes and --process_id") from None
    finished = sweep.run_sweep(config, workdir, shard, _CELLS.value, _MAX_GROUP.value, _DRY_RUN.value,
                               placement_fn=parallel.placement_for_group, stop=stop, extend=_EXTEND.value)
    if finished:
        from icl_regression import results

        _report(results.summarize(workdir, sweep.run_dirs(config, workdir)), workdir)
    elif stop:
        print(f"[sweep] resume with: {cli.rerun_command()}")


def _check_process_flags() -> None:
    """Flags that would otherwise be ignored, or fail inside jax, are refused before anything runs."""
    given = [f"--{f.name}" for f in (_COORDINATOR, _NUM_PROCESSES, _PROCESS_ID) if f.value is not None]
    if given and not _MULTIHOST.value:
        raise cli.UsageError(f"{', '.join(given)} without --multihost would be ignored; allowed: with --multihost "
                             "only (a single-host sweep splits its grid with --shard=i/n)")
    cli.at_least(_NUM_PROCESSES, 1)
    cli.at_least(_PROCESS_ID, 0)
    if None not in (_NUM_PROCESSES.value, _PROCESS_ID.value) and _PROCESS_ID.value >= _NUM_PROCESSES.value:
        raise cli.UsageError(f"--process_id={_PROCESS_ID.value}; allowed: 0 <= process_id < --num_processes="
                             f"{_NUM_PROCESSES.value}")
    if _SHARD.value and _CELLS.value:
        raise cli.UsageError(f"--shard={_SHARD.value} with --cells: --cells names exactly the cells to train, so the "
                             "shard would be ignored; allowed: one of the two")


def _multihost_args() -> dict:
    args = {"coordinator_address": _COORDINATOR.value, "num_processes": _NUM_PROCESSES.value,
            "process_id": _PROCESS_ID.value}
    return {k: v for k, v in args.items() if v is not None}


def _summarize(overrides) -> dict:
    """Summarises the folder with its own stored config; a --config that differs from it is refused."""
    from icl_regression import results, sweep

    workdir = cli.check_workdir(_WORKDIR.value, create=False, must_exist=True)
    stored = sweep.stored_config(workdir)
    if _CONFIG.value or overrides:
        config = cli.load_config(_CONFIG.value, overrides)
        if stored is not None and sweep.config_differences(stored, config):
            raise cli.UsageError(f"--summarize: this config differs from {workdir / names.SWEEP_CONFIG_FILE} in "
                                 f"{', '.join(sweep.config_differences(stored, config)[:8])}; drop --config to "
                                 "summarise the sweep that is there")
    else:
        config = stored
    if config is None:  # train.py's folders: every run under <workdir>/runs
        run_dirs = sorted(p.parent for p in (workdir / names.RUNS_DIR).glob(f"*/{names.CONFIG_FILE}"))
        if not run_dirs:
            raise cli.UsageError(f"--workdir={workdir} holds no {names.SWEEP_CONFIG_FILE} and no runs/*/"
                                 f"{names.CONFIG_FILE}: nothing to summarise")
    else:
        run_dirs = sweep.run_dirs(config, workdir)
    return results.summarize(workdir, run_dirs)


def _report(summary: dict, workdir) -> None:
    from icl_regression import plotting, results

    print(results.format_table(summary["cells"]))
    print(results.format_threshold(summary))
    print(results.format_dynamics(summary))
    for name, problems in summary.get("damaged_cells", {}).items():
        print(f"not summarised: {name}: {'; '.join(problems)} (rerun the sweep to repair it)")
    if _FIGURE.value and summary["cells"]:
        paths = plotting.write_all_figures(workdir)
        print("figures: " + ", ".join(str(p) for p in paths if p.suffix == ".png"))


if __name__ == "__main__":
    cli.run(main)
