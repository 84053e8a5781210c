"""Packs a sweep folder's results (and, to resume elsewhere, its unfinished checkpoints) for transport; unpacks.

    python experiments/pack.py --workdir=runs/paper_small --out=$OUT                  # <name>-results.tar.gz
    python experiments/pack.py --workdir=runs/paper_small --out=$OUT --checkpoints    # + checkpoint parts ≤ 15 MiB
    python experiments/pack.py --workdir=runs/paper_small --unpack=carried/           # put them back
    python experiments/pack.py --workdir=results/paper_small --compress_metrics       # before committing results

The results archive holds every run's config, metrics, summary and divergence record and the sweep's config,
history, index, summary, figures and stored analyses, never checkpoints. Checkpoint parts hold the newest
checkpoint of each unfinished run (whole runs, as many as fit): `--max_parts` keeps the files within what a device
call brings back (8), `--max_mib` the checkpoints within what the next lease can carry in beside the repository's
files (64 MiB in all). Every archive ends with a manifest of SHA-256 sums; unpacking checks it before writing.
`--compress_metrics` compresses the finished runs' metrics.jsonl in place (metrics.jsonl.gz, about 4× smaller;
every reader takes either): committed results travel with the tree to every device call, 64 MiB in all.
"""

from absl import flags

from icl_regression import cli, transport

_WORKDIR = flags.DEFINE_string("workdir", None, "Sweep (or train.py) folder to pack, or to unpack into.")
_OUT = flags.DEFINE_string("out", None, "Folder that receives the archive(s).")
_CHECKPOINTS = flags.DEFINE_bool("checkpoints", False, "Also pack the unfinished runs' newest checkpoints.")
_MAX_PARTS = flags.DEFINE_integer("max_parts", 7, "At most this many checkpoint parts, less any extra results parts "
                                  "(whole runs that fit).")
_MAX_MIB = flags.DEFINE_float("max_mib", 20.0, "At most this many MiB of checkpoint parts (whole runs that fit): what "
                              "the next lease carries in beside the repository's files, 64 MiB in all.")
RETURN_MIB = 64  # what one device call brings back, all files together
_UNPACK = flags.DEFINE_list("unpack", None, "Archives, parts, or folders holding them, to extract into --workdir.")
_COMPRESS = flags.DEFINE_bool("compress_metrics", False, "Compress the finished runs' metrics.jsonl in --workdir in "
                              "place (metrics.jsonl.gz), as committed results are kept.")


def main():
    if _COMPRESS.value:
        workdir = cli.check_workdir(_WORKDIR.value, create=False, must_exist=True)
        count, before, after = transport.compress_finished_metrics(workdir)
        print(f"compressed the metrics of {count} finished run(s) in {workdir}: {before / 2**20:.2f} MiB → "
              f"{after / 2**20:.2f} MiB")
        return
    if _UNPACK.value:
        workdir = cli.check_workdir(_WORKDIR.value)
        written = transport.unpack(_UNPACK.value, workdir)
        print(f"unpacked {len(written)} file(s) into {workdir}")
        return
    cli.at_least(_MAX_PARTS, 1)
    max_mib = cli.positive_float(_MAX_MIB)
    workdir = cli.check_workdir(_WORKDIR.value, create=False, must_exist=True)
    out = cli.check_workdir(_OUT.value, flag="--out")
    paths = transport.pack_results(workdir, out)
    results_mib = sum(p.stat().st_size for p in paths) / transport.MiB
    if _CHECKPOINTS.value:  # a results archive in several parts leaves fewer files and bytes for checkpoints
        budget = min(max_mib, RETURN_MIB - 1 - results_mib)
        parts, left_out = transport.pack_checkpoints(workdir, out, max_parts=_MAX_PARTS.value - len(paths) + 1,
                                                     max_bytes=max(0, int(budget * transport.MiB)))
        paths += parts
        for rel in left_out:
            print(f"not packed (over {_MAX_PARTS.value} parts or {budget:.1f} MiB): {rel}")
    for path in paths:
        size = path.stat().st_size / 2**20
        print(f"{path} ({size:.2f} MiB)")
    total = sum(p.stat().st_size for p in paths) / transport.MiB
    print(f"{len(paths)} file(s), {total:.2f} MiB together")
    if total > RETURN_MIB:
        print(f"warning: over the {RETURN_MIB} MiB a device call brings back: the results archive alone is "
              f"{results_mib:.1f} MiB")


if __name__ == "__main__":
    cli.run_without_config(main)
