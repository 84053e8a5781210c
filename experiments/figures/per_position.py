"""Draws error against context position k for the transformer, ridge and dMMSE at the final evaluation, for a few
M (one panel each) on both evaluation distributions, from a stored sweep: the transformer at every data budget in
its line style (solid: the smallest), or at the one `--budget` names.

    python experiments/figures/per_position.py --workdir=results/cpu_demo --num_tasks=2,8,inf
    python experiments/figures/per_position.py --workdir=results/cpu_demo --budget=128,2500  # batch,steps
    # → results/cpu_demo/figures/per_position.{png,pdf}
"""

from absl import flags

from icl_regression import cli, names, plotting

_WORKDIR = flags.DEFINE_string("workdir", "results/cpu_demo", "Sweep results folder (runs/, sweep_summary.json).")
_OUT = flags.DEFINE_string("out", None, "Folder for the PNG and PDF (default: <workdir>/figures).")
_NUM_TASKS = flags.DEFINE_list("num_tasks", None, "M values, one panel each (default: up to 4 spread over the "
                               "sweep, ∞ included); 'inf' for M = ∞.")
_EVAL_SET = flags.DEFINE_enum("eval_set", None, list(names.EVAL_SETS), "Only this evaluation set (default: both).")
_BUDGET = flags.DEFINE_string("budget", None, "Only this data budget, as 'batch,steps' (e.g. 128,2500; default: every "
                              "budget, each in its line style).")
_SETTING = flags.DEFINE_string("setting", None, "For a sweep whose runs differ in more than M, budget and seed (D, "
                               "width, …): the setting to draw, as its label, e.g. 'D=2, K=8, noise_std=0.5' "
                               "(the table and the error list them).")


def main():
    try:
        paths = plotting.write_per_position_figure(_WORKDIR.value, _OUT.value, _NUM_TASKS.value, _EVAL_SET.value,
                                                   _BUDGET.value, _SETTING.value)
    except ValueError as e:  # a bad --num_tasks or --budget (StoreError: reported by cli.run)
        raise cli.UsageError(str(e))
    print("\n".join(str(p) for p in paths))


if __name__ == "__main__":
    cli.run_without_config(main)
