"""The loss landscape between finite-M and M = ∞ models of a stored sweep (Raventós et al. Fig. 11), from their
final parameters: checkpoints where the sweep folder has them, else each needed run is retrained into --scratch
(default runs/retrained/<workdir name>) and must reproduce its stored metrics exactly. Prints the barriers, writes
`<workdir>/analysis/landscape.json` and `<workdir>/figures/landscape.{png,pdf}`.

    python experiments/landscape.py --config=experiments/configs/landscape.py:cpu --workdir=results/cpu_budgets \
        --scratch=runs/landscape_scratch
"""

from absl import flags

from icl_regression import cli, landscape, plotting_experiments, trained

_CONFIG = flags.DEFINE_string("config", None, "Landscape config file, path[:variant] (its `landscape` section); "
                              "override fields with --config.<section>.<field>=value.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Sweep results folder (runs/).", required=True)
_SCRATCH = flags.DEFINE_string("scratch", None, "Folder for retrained runs when checkpoints are missing "
                               "(default: runs/retrained/<workdir name>).")
_RETRAIN = flags.DEFINE_bool("retrain", True, "Retrain runs without a final checkpoint (else stop and say so).")
_RETRAIN_RTOL = flags.DEFINE_float("retrain_rtol", 0.0, "Accept retrained runs whose final metrics are within this "
                                   "relative tolerance of the stored ones (0: every record exactly equal).")
flags.mark_flags_as_required(["config"])


def main(overrides, stop):
    del stop
    config = cli.load_config(_CONFIG.value, overrides)
    if "landscape" not in config:
        raise cli.UsageError("the config has no `landscape` section (use experiments/configs/landscape.py)")
    scratch = cli.scratch_folder(_SCRATCH.value, _RETRAIN.value, _WORKDIR.value)
    try:
        analysis = landscape.run_landscape(_WORKDIR.value, config["landscape"], scratch,
                                           retrain_rtol=_RETRAIN_RTOL.value)
    except trained.MissingCheckpoints as e:  # no scratch folder: --retrain=false
        raise cli.UsageError(e.retraining_off())
    except ValueError as e:  # StoreError and ConfigError: reported by cli.run
        raise cli.UsageError(str(e))
    print(landscape.format_landscape(analysis))
    paths = plotting_experiments.write_experiment_figures("landscape", _WORKDIR.value)
    print("figures: " + ", ".join(str(p) for p in paths if p.suffix == ".png"))


if __name__ == "__main__":
    cli.run(main, signals=False)
