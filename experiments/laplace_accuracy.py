"""Measures the accuracy of the Laplace posterior mean (`estimators.laplace_preds`, a Gibbs sampler) against a
brute-force float64 importance-sampling reference, and writes the measurement as JSON.

    python experiments/laplace_accuracy.py                      # D = 8, K = 16, σ = 0.5: results/estimators/
    python experiments/laplace_accuracy.py --dim=2 --context_len=8 --out=/tmp/laplace_accuracy_d2.json
"""

from absl import flags

from icl_regression import cli, laplace_accuracy
from icl_regression.store import write_json

_DIM = flags.DEFINE_integer("dim", 8, "Task dimension D.")
_CONTEXT_LEN = flags.DEFINE_integer("context_len", 16, "Pairs per sequence K.")
_NOISE_STD = flags.DEFINE_float("noise_std", 0.5, "Noise std σ.")
_NUM_SEQUENCES = flags.DEFINE_integer("num_sequences", 8, "Sequences (each gives K prefixes).")
_REFERENCE_SAMPLES = flags.DEFINE_integer("reference_samples", 1_000_000, "Importance samples per prefix.")
_NUM_SAMPLES = flags.DEFINE_list("num_samples", ["2000", "4000", "8000"], "Gibbs sweeps to measure.")
_BURN_IN = flags.DEFINE_integer("burn_in", 200, "Gibbs burn-in sweeps.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the inputs, the reference and the sampler.")
_OUT = flags.DEFINE_string("out", "results/estimators/laplace_accuracy.json", "Where to write the JSON.")


def main():
    for flag, minimum in ((_DIM, 1), (_CONTEXT_LEN, 2), (_NUM_SEQUENCES, 1), (_REFERENCE_SAMPLES, 1),
                          (_BURN_IN, 0)):  # K = 1 is the empty prefix alone: its predictions are exactly 0
        cli.at_least(flag, minimum)
    if not 0 <= _SEED.value < 2**31:
        raise cli.UsageError(f"--seed={_SEED.value}; allowed: an integer in [0, 2^31)")
    noise_std = cli.positive_float(_NOISE_STD)
    num_samples = cli.int_list(_NUM_SAMPLES, minimum=1)
    out = cli.check_output_file(_OUT.value)
    result = laplace_accuracy.measure(_DIM.value, _CONTEXT_LEN.value, noise_std, _NUM_SEQUENCES.value,
                                      _REFERENCE_SAMPLES.value, tuple((n, _BURN_IN.value) for n in num_samples),
                                      _SEED.value)
    write_json(out, result)
    print(_OUT.value)


if __name__ == "__main__":
    cli.run_without_config(main)
