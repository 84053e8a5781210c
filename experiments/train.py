"""Trains one model and writes its run folder.

    python experiments/train.py --config=experiments/configs/default.py --workdir=runs/single \
        --config.data.num_tasks=64 --config.train.steps=20000
"""

import sys
from pathlib import Path

from absl import app, flags
from ml_collections import config_flags

from icl_regression import engine
from icl_regression.config import ConfigError, run_config_from_dict

_CONFIG = config_flags.DEFINE_config_file("config", None, "Run config file (path[:variant]).", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder that receives the run folder.", required=True)
flags.mark_flags_as_required(["config"])


def main(argv):
    del argv
    try:
        cfg = run_config_from_dict(_CONFIG.value.to_dict())
    except ConfigError as e:
        raise app.UsageError(str(e))
    run_dir = Path(_WORKDIR.value) / cfg.run_name
    try:
        summary = engine.train_run(cfg, run_dir, progress=lambda p: print(
            f"step {p.step}/{p.total_steps}  {p.steps_per_second:,.1f} steps/s", flush=True))
    except KeyboardInterrupt:
        print(f"interrupted: run the same command again to resume {run_dir} from its last checkpoint",
              file=sys.stderr)
        sys.exit(130)
    print(f"{run_dir}: {summary['status']}, final {', '.join(f'{k}={v:.4f}' for k, v in summary['final'].items())}")


if __name__ == "__main__":
    app.run(main)
