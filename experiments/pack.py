"""Packs a sweep folder's results (and, to resume elsewhere, its unfinished checkpoints) for transport; unpacks.

    python experiments/pack.py --workdir=runs/paper_small --out=$OUT                  # <name>-results.tar.gz
    python experiments/pack.py --workdir=runs/paper_small --out=$OUT --checkpoints    # + checkpoint parts ≤ 15 MiB
    python experiments/pack.py --workdir=runs/paper_small --unpack=carried/           # put them back

The results archive holds every run's config, metrics, summary and divergence record and the sweep's config,
history, index, summary and figures, never checkpoints. Checkpoint parts hold the newest checkpoint of each
unfinished run; `--max_parts` keeps them within what a GPU lease can bring back (8 files per call).
"""

from absl import flags

from icl_regression import cli, transport

_WORKDIR = flags.DEFINE_string("workdir", None, "Sweep (or train.py) folder to pack, or to unpack into.")
_OUT = flags.DEFINE_string("out", None, "Folder that receives the archive(s).")
_CHECKPOINTS = flags.DEFINE_bool("checkpoints", False, "Also pack the unfinished runs' newest checkpoints.")
_MAX_PARTS = flags.DEFINE_integer("max_parts", 7, "At most this many checkpoint parts, less any extra results parts "
                                  "(whole runs that fit).")
_UNPACK = flags.DEFINE_list("unpack", None, "Archives, parts, or folders holding them, to extract into --workdir.")


def main():
    if _UNPACK.value:
        workdir = cli.check_workdir(_WORKDIR.value)
        written = transport.unpack(_UNPACK.value, workdir)
        print(f"unpacked {len(written)} file(s) into {workdir}")
        return
    cli.at_least(_MAX_PARTS, 1)
    workdir = cli.check_workdir(_WORKDIR.value, create=False, must_exist=True)
    out = cli.check_workdir(_OUT.value, flag="--out")
    paths = transport.pack_results(workdir, out)
    if _CHECKPOINTS.value:  # a results archive in several parts leaves fewer files for checkpoints
        parts, left_out = transport.pack_checkpoints(workdir, out, max_parts=_MAX_PARTS.value - len(paths) + 1)
        paths += parts
        for rel in left_out:
            print(f"not packed (over {_MAX_PARTS.value} parts): {rel}")
    for path in paths:
        size = path.stat().st_size / 2**20
        print(f"{path} ({size:.2f} MiB)")


if __name__ == "__main__":
    cli.run_without_config(main)
