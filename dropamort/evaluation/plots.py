"""Pictures of calibration: the reliability diagram of ``p`` and SBC rank plots."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from dropamort.evaluation.calibration import ecdf_band  # noqa: E402


def save_reliability(path: str, rel: dict) -> None:
  """Observed frequency against mean predicted p per bin; the diagonal is calibration.
  Bar widths follow the bins, the lower panel shows how many cells each bin holds."""
  edges = np.asarray(rel["edges"])
  mids, width = (edges[1:] + edges[:-1]) / 2, np.diff(edges)
  mean_p = np.array([np.nan if v is None else v for v in rel["mean_p"]], float)
  freq = np.array([np.nan if v is None else v for v in rel["frequency"]], float)
  count = np.asarray(rel["count"])
  fig, (top, bottom) = plt.subplots(2, 1, figsize=(4.5, 5.5), sharex=True,
                                    gridspec_kw={"height_ratios": [3, 1]})
  top.bar(mids, np.nan_to_num(freq), width=width * 0.9, color="tab:blue", alpha=0.7,
          label="observed frequency")
  top.plot(mean_p, freq, "o", color="tab:blue", ms=4, label="(mean p, frequency)")
  top.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
  top.set_ylabel("share of cells that hold a droplet")
  top.set_title(f"reliability of p (ECE {rel['ece']:.4f}, n = {rel['n']:,})")
  top.legend(loc="upper left", fontsize=8)
  top.set_xlim(0, 1)
  top.set_ylim(0, 1)
  bottom.bar(mids, np.maximum(count, 0.5), width=width * 0.9, color="grey")
  bottom.set_yscale("log")
  bottom.set_ylabel("cells")
  bottom.set_xlabel("predicted probability p")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def save_sbc(path: str, sbc: dict, draws: int) -> None:
  """Per statistic: the rank histogram with the 99% range of a uniform histogram, and
  the rank ECDF minus the uniform CDF with a 95% pointwise band."""
  names = list(sbc)
  fig, axes = plt.subplots(2, len(names), figsize=(4 * len(names), 6), squeeze=False)
  for col, name in enumerate(names):
    s = sbc[name]
    hist, n, bins = np.asarray(s["histogram"]), s["n"], s["bins"]
    lo, hi = stats.binom.ppf([0.005, 0.995], n, 1 / bins)
    ax = axes[0, col]
    ax.axhspan(lo, hi, color="grey", alpha=0.25, label="99% range if uniform")
    ax.bar(np.arange(bins), hist, width=0.9, color="tab:blue")
    ax.axhline(n / bins, color="k", lw=1)
    ax.set_title(f"{name.replace('_', ' ')}: p = {s['pvalue']:.3f}")
    ax.set_xlabel(f"rank bin ({bins} bins of ranks 0..{draws})")
    ax.set_ylabel("images")
    if col == 0:
      ax.legend(fontsize=8)
    ax = axes[1, col]
    ranks = np.sort(np.asarray(s["ranks"], float) / (draws + 1))
    z, band_lo, band_hi = ecdf_band(n, draws)
    ax.fill_between(z, band_lo, band_hi, color="grey", alpha=0.25, label="95% band")
    ecdf = np.searchsorted(ranks, z, side="right") / max(n, 1)
    ax.plot(z, ecdf - z, color="tab:blue")
    ax.axhline(0, color="k", lw=1)
    ax.set_xlabel("fractional rank")
    ax.set_ylabel("ECDF − uniform")
    if col == 0:
      ax.legend(fontsize=8)
  fig.suptitle("simulation-based calibration: ranks of the truth among posterior draws\n"
               "(above 0 on the left: the posterior overestimates; a ∩ shape: too wide; "
               "∪: too narrow)", fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
