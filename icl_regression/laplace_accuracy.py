"""How accurate is the Laplace posterior mean of `estimators.laplace_preds`? A brute-force float64 reference and
the measurement against it.

The reference is self-normalised importance sampling on w itself, a method independent of the Gibbs sampler: the
proposal is a multivariate Student t (4 degrees of freedom) centred on the Gaussian-prior posterior mean with 1.5×
its covariance. The t's polynomial tails are heavier than the target's (Gaussian likelihood × Laplace prior), so
the weights are bounded and the estimate has finite variance; its standard error is estimated from the same
samples and reported beside every comparison.
"""

from __future__ import annotations

import time

import numpy as np

T_DEGREES_OF_FREEDOM = 4
T_COVARIANCE_INFLATION = 1.5


def reference_posterior_mean(xs, ys, scale: float, noise_std: float, num_samples: int, seed: int = 0,
                             chunk: int = 200_000) -> tuple[np.ndarray, np.ndarray]:
    """E[w | X, y] and its standard error [D] under i.i.d. Laplace(0, scale) coordinates, for one prefix
    (X [k, D], y [k]; k = 0 gives 0), by importance sampling in float64."""
    xs, ys = np.asarray(xs, np.float64), np.asarray(ys, np.float64)
    dim = xs.shape[1]
    if xs.shape[0] == 0:
        return np.zeros(dim), np.zeros(dim)
    rng = np.random.default_rng(seed)
    precision = xs.T @ xs / noise_std**2 + np.eye(dim)  # the Gaussian-prior (unit variance) posterior
    center = np.linalg.solve(precision, xs.T @ ys / noise_std**2)
    chol = np.linalg.cholesky(T_COVARIANCE_INFLATION * np.linalg.inv(precision))
    nu = T_DEGREES_OF_FREEDOM
    log_w, draws = [], []
    for start in range(0, num_samples, chunk):
        size = min(chunk, num_samples - start)
        z = rng.standard_normal((size, dim))
        w = center + (z @ chol.T) / np.sqrt(rng.chisquare(nu, size) / nu)[:, None]
        q = np.sum(np.square(np.linalg.solve(chol, (w - center).T)), axis=0)
        log_target = -np.sum(np.square(ys - w @ xs.T), axis=1) / (2 * noise_std**2) - np.abs(w).sum(1) / scale
        log_w.append(log_target + (nu + dim) / 2 * np.log1p(q / nu))
        draws.append(w)
    log_w, draws = np.concatenate(log_w), np.concatenate(draws)
    weights = np.exp(log_w - log_w.max())
    weights /= weights.sum()
    mean = weights @ draws
    standard_error = np.sqrt(np.sum(np.square(weights[:, None] * (draws - mean)), axis=0))
    return mean, standard_error


def reference_preds(xs, ys, scale: float, noise_std: float, num_samples: int, seed: int = 0):
    """(preds [B, K], standard errors of the preds [B, K], posterior means [B, K, D]) for every prefix."""
    xs, ys = np.asarray(xs, np.float64), np.asarray(ys, np.float64)
    batch, context_len, dim = xs.shape
    means, errors = np.zeros((batch, context_len, dim)), np.zeros((batch, context_len))
    for b in range(batch):
        for k in range(context_len):
            mean, se = reference_posterior_mean(xs[b, :k], ys[b, :k], scale, noise_std, num_samples,
                                                seed + b * context_len + k)
            means[b, k] = mean
            errors[b, k] = np.sqrt(np.sum(np.square(xs[b, k] * se)))  # coordinates' errors as if independent
    return np.einsum("bkd,bkd->bk", xs, means), errors, means


def relative_rms(estimate, reference, axis=None):
    """RMS of estimate − reference over `axis`, relative to the RMS of the reference."""
    estimate, reference = np.asarray(estimate, np.float64), np.asarray(reference, np.float64)
    return np.sqrt(np.mean(np.square(estimate - reference), axis=axis) / np.mean(np.square(reference), axis=axis))


def _per_position(estimate, reference) -> list:
    """Relative RMS error at each position; None at the first (both are exactly 0 there)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        values = relative_rms(estimate, reference, axis=0)
    return [None if not np.isfinite(v) else float(v) for v in values]


def measure(dim: int = 8, context_len: int = 16, noise_std: float = 0.5, num_sequences: int = 8,
            reference_samples: int = 1_000_000, sampler_settings=((2_000, 200), (4_000, 200), (8_000, 200)),
            seed: int = 0, print_fn=print) -> dict:
    """Relative RMS error of `laplace_preds` against the reference on Laplace-task sequences, per setting."""
    from icl_regression import estimators  # jax: only for the measurement, not for the reference

    rng = np.random.default_rng(seed)
    scale = estimators.UNIT_VARIANCE_LAPLACE_SCALE
    ws = rng.laplace(0.0, scale, (num_sequences, dim))
    xs = rng.standard_normal((num_sequences, context_len, dim))
    ys = np.einsum("bkd,bd->bk", xs, ws) + noise_std * rng.standard_normal((num_sequences, context_len))
    started = time.perf_counter()
    ref, ref_se, _ = reference_preds(xs, ys, scale, noise_std, reference_samples, seed)
    reference_seconds = time.perf_counter() - started
    print_fn(f"[laplace accuracy] reference: {reference_samples:,} samples per prefix, {reference_seconds:.0f} s; "
             f"its own standard error: {relative_rms(ref + ref_se, ref):.2e} of the RMS prediction")
    rows = []
    for num_samples, burn_in in sampler_settings:
        started = time.perf_counter()
        preds = np.asarray(estimators.laplace_preds(xs.astype(np.float32), ys.astype(np.float32), scale,
                                                    noise_std, seed, num_samples, burn_in))
        seconds = time.perf_counter() - started
        rows.append({"num_samples": num_samples, "burn_in": burn_in,
                     "relative_rms_error": float(relative_rms(preds, ref)),
                     "relative_rms_error_per_position": _per_position(preds, ref),
                     "excess_loss_over_dim": float(np.mean(np.square(preds - ref)) / dim),
                     "seconds_including_compile": round(seconds, 1)})
        print_fn(f"[laplace accuracy] {num_samples:,} sweeps after {burn_in} burn-in: relative RMS error "
                 f"{rows[-1]['relative_rms_error']:.4f}, excess L/D {rows[-1]['excess_loss_over_dim']:.2e}")
    return {"dim": dim, "context_len": context_len, "noise_std": noise_std, "num_sequences": num_sequences,
            "laplace_scale": scale, "seed": seed, "reference": {
                "method": f"self-normalised importance sampling, multivariate t ({T_DEGREES_OF_FREEDOM} dof) around "
                          f"the Gaussian-prior posterior, covariance x{T_COVARIANCE_INFLATION}, float64",
                "samples_per_prefix": reference_samples, "seconds": round(reference_seconds, 1),
                "relative_standard_error": float(relative_rms(ref + ref_se, ref)),
                "relative_standard_error_per_position": _per_position(ref + ref_se, ref)},
            "sampler": rows,
            "measure": "relative RMS error = RMS over sequences and positions of (laplace_preds − reference) / RMS "
                       "of the reference predictions; excess L/D = mean (laplace_preds − reference)² / D"}
