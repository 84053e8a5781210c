"""Runs a diversity sweep (or this process's slice of it), then prints the table and the threshold.

    python experiments/sweep.py --config=experiments/configs/cpu_demo.py --workdir=runs/cpu_demo
    python experiments/sweep.py --config=experiments/configs/paper_small.py --workdir=runs/paper_small --shard=0/4
    python experiments/sweep.py --config=... --workdir=... --dry_run       # the plan and its cost only
    python experiments/sweep.py --config=... --workdir=... --summarize     # table, threshold, figure from disk

Finished cells are skipped and interrupted ones resume from their checkpoints: rerunning the same command after a
crash or kill completes the sweep without redoing finished work.
"""

import sys
from pathlib import Path

from absl import app, flags
from ml_collections import config_flags

from icl_regression import dynamics, parallel, plotting, results, sweep
from icl_regression.config import ConfigError

_CONFIG = config_flags.DEFINE_config_file("config", None, "Sweep config file (path[:variant]).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Sweep folder (run folders, index, summary, figure).",
                               required=True)
_SHARD = flags.DEFINE_string("shard", None, "Train only slice i of n of the grid, as 'i/n'.")
_CELLS = flags.DEFINE_list("cells", None, "Train only these cells (run folder names).")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Print the plan and its cost, train nothing.")
_SUMMARIZE = flags.DEFINE_bool("summarize", False, "Only summarise what is on disk (no training).")
_MAX_GROUP = flags.DEFINE_integer("max_group_size", 0, "Models per compiled program (0: all that fit a group).")
_MULTIHOST = flags.DEFINE_bool("multihost", False, "Call jax.distributed.initialize(); each host takes its cells.")
_FIGURE = flags.DEFINE_bool("figure", True, "Write the sweep, dynamics and per-position figures (PNG, PDF) into "
                             "<workdir>/figures.")
flags.mark_flags_as_required(["config"])


def main(argv):
    del argv
    config = _CONFIG.value.to_dict()
    workdir = Path(_WORKDIR.value)
    try:
        shard = sweep.parse_shard(_SHARD.value) if _SHARD.value else None
        if _MULTIHOST.value:
            shard = parallel.initialize_multihost(shard)
        if _SUMMARIZE.value:
            cells = sweep.expand(config, workdir)
            summary = results.summarize(workdir, [c.run_dir for c in cells])
        else:
            summary = sweep.run_sweep(config, workdir, shard, _CELLS.value, _MAX_GROUP.value, _DRY_RUN.value,
                                      placement_fn=parallel.placement_for_group)
    except ConfigError as e:
        raise app.UsageError(str(e))
    except KeyboardInterrupt:
        print(f"[sweep] interrupted: finished cells are stored in {workdir}; run the same command again to resume "
              "(interrupted cells restart from their last checkpoint)", file=sys.stderr)
        sys.exit(130)
    if summary is None:
        return
    print(results.format_table(summary["cells"]))
    print(results.format_threshold(summary))
    print(dynamics.format_dynamics(summary))
    if _FIGURE.value and summary["cells"]:
        paths = plotting.write_all_figures(workdir)
        print("figures: " + ", ".join(str(p) for p in paths if p.suffix == ".png"))


if __name__ == "__main__":
    app.run(main)
