"""Is the posterior calibrated? Interval coverage, reliability of ``p``, and SBC.

- Coverage: the share of true values inside central intervals of a given level.
- Reliability: among cells given probability ≈ p of holding a droplet, the share that
  do; the expected calibration error (ECE) is the count-weighted mean gap.
- Simulation-based calibration (SBC, Talts et al. 2018): for images simulated from the
  prior, the rank of a true statistic among L posterior draws is uniform on {0..L} when
  the posterior is exact. Ties (a count is discrete) are broken at random.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from dropamort.encoder.posterior import central_z


def reliability(p: np.ndarray, hit: np.ndarray, bins: int = 10) -> dict:
  """Reliability diagram data and ECE of probabilities ``p`` against outcomes ``hit``.

  Returns:
    ece, and per bin of p (equal width): edges, count, mean p, observed frequency.
  """
  p, hit = np.asarray(p, float).ravel(), np.asarray(hit, float).ravel()
  edges = np.linspace(0, 1, bins + 1)
  idx = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
  count = np.bincount(idx, minlength=bins)
  with np.errstate(invalid="ignore", divide="ignore"):
    mean_p = np.bincount(idx, p, bins) / count
    freq = np.bincount(idx, hit, bins) / count
  gaps = np.where(count > 0, np.abs(mean_p - freq), 0.0)
  ece = float((count * gaps).sum() / max(count.sum(), 1))
  as_list = lambda a: [None if not np.isfinite(v) else float(v) for v in a]
  return {"ece": ece, "n": int(count.sum()), "edges": edges.tolist(),
          "count": count.tolist(), "mean_p": as_list(mean_p), "frequency": as_list(freq)}


def sbc_ranks(true_S: np.ndarray, samples_SL: np.ndarray, rng: np.random.Generator):
  """Rank of each true value among its L posterior draws, in {0, ..., L}.

  Draws equal to the truth are split at random, so a discrete statistic still has
  uniform ranks under an exact posterior. NaN truths (undefined statistic) are dropped.
  """
  true_S, samples_SL = np.asarray(true_S, float), np.asarray(samples_SL, float)
  keep = np.isfinite(true_S)
  t, s = true_S[keep, None], samples_SL[keep]
  below = np.sum(s < t, axis=1)
  ties = np.sum(s == t, axis=1)
  return below + rng.integers(0, ties + 1)


def error_summary(true_S: np.ndarray, samples_SL: np.ndarray) -> dict:
  """Where a failed SBC comes from: the mean error of the posterior mean (bias), the
  mean posterior sd, and the sd of the standardized errors (≈ 1 if the width is right,
  > 1 too narrow, < 1 too wide)."""
  true_S, samples_SL = np.asarray(true_S, float), np.asarray(samples_SL, float)
  defined = np.isfinite(samples_SL).any(axis=1)  # Mean radius of an empty draw: NaN.
  mean, sd = np.full(len(true_S), np.nan), np.full(len(true_S), np.nan)
  mean[defined] = np.nanmean(samples_SL[defined], axis=1)
  sd[defined] = np.nanstd(samples_SL[defined], axis=1)
  keep = np.isfinite(true_S) & np.isfinite(mean) & (sd > 0)
  if not keep.any():
    return {}
  err = mean[keep] - true_S[keep]
  return {"mean_error": float(err.mean()), "mean_posterior_sd": float(sd[keep].mean()),
          "sd_of_z": float(np.std(err / sd[keep]))}


def uniformity(ranks: np.ndarray, draws: int, bins: int | None = None) -> dict:
  """Chi-square test that ranks are uniform on {0..draws}, with equal-width rank bins.

  ``bins`` defaults to about n/5 (at least 5 expected per bin), at most 20, and divides
  draws + 1 so every bin holds the same number of possible ranks.
  """
  ranks = np.asarray(ranks, int)
  n, support = len(ranks), draws + 1
  if bins is None:
    target = int(np.clip(n // 5, 2, 20))
    bins = max(b for b in range(1, target + 1) if support % b == 0)
  if support % bins:
    raise ValueError(f"bins ({bins}) must divide draws + 1 ({support})")
  hist = np.bincount(ranks * bins // support, minlength=bins)
  chi2, pvalue = stats.chisquare(hist) if n else (float("nan"), float("nan"))
  return {"n": n, "bins": bins, "histogram": hist.tolist(), "chi2": float(chi2),
          "pvalue": float(pvalue)}


def ecdf_band(n: int, draws: int, level: float = 0.95, points: int = 101):
  """Pointwise band for the rank ECDF minus the uniform CDF (normal approximation)."""
  z = np.linspace(0, 1, points)
  half = central_z(level) * np.sqrt(z * (1 - z) / max(n, 1))
  return z, -half, half
