"""Pictures for checking a result by eye: overlay, reconstruction, residual."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.collections import PatchCollection  # noqa: E402
from matplotlib.patches import Circle  # noqa: E402


def _figure(image_HWC, title: str):
  h, w = image_HWC.shape[:2]
  scale = min(12 / w, 12 / h, 0.05)  # Inches per pixel: large images stay readable.
  fig = plt.figure(figsize=(max(4.0, w * scale), max(3.0, h * scale) + 0.4))
  ax = fig.add_axes([0, 0, 1, h * scale / (h * scale + 0.4)])
  ax.imshow(np.clip(image_HWC, 0, 1), interpolation="nearest")
  ax.set_xlim(-0.5, w - 0.5)
  ax.set_ylim(h - 0.5, -0.5)
  ax.set_axis_off()
  fig.suptitle(title, y=0.995, va="top", fontsize=10)
  return fig, ax


def composition_colours(comp_NT: np.ndarray) -> np.ndarray:
  """RGB per droplet: the first three composition values, or a colour map of the first."""
  if comp_NT.shape[1] >= 3:
    return np.clip(comp_NT[:, :3], 0, 1)
  return plt.get_cmap("viridis")(comp_NT[:, 0])[:, :3]


def save_overlay(path, image_HWC, x, y, r, comp_NT, p, title="") -> None:
  """Circles at the inferred radius, coloured by composition, opacity by p."""
  fig, ax = _figure(image_HWC, title)
  colours = np.concatenate([composition_colours(comp_NT), np.asarray(p)[:, None]], 1)
  circles = [Circle((a - 0.5, b - 0.5), c) for a, b, c in zip(x, y, r)]
  lw = max(0.3, min(1.5, 600 / max(image_HWC.shape[:2])))
  ax.add_collection(PatchCollection(circles, facecolor="none", edgecolor=colours,
                                    linewidth=lw))
  fig.savefig(path, dpi=100)
  plt.close(fig)


def save_image(path, image_HWC, title="") -> None:
  fig, _ = _figure(image_HWC, title)
  fig.savefig(path, dpi=100)
  plt.close(fig)


def save_residual(path, image_HWC, recon_HWC, title="") -> None:
  """Image minus reconstruction, mean over channels, on a symmetric colour scale."""
  res = (np.asarray(image_HWC) - np.asarray(recon_HWC)).mean(-1)
  fig, ax = _figure(np.zeros_like(image_HWC), title)
  lim = max(1e-3, float(np.quantile(np.abs(res), 0.99)))
  im = ax.imshow(res, cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
  fig.colorbar(im, ax=ax, fraction=0.03, pad=0.01)
  fig.savefig(path, dpi=100)
  plt.close(fig)


def save_size_distribution(path, counts_SB, edges, *, unit_label: str, title: str) -> None:
  """Histogram of droplet diameters on a log axis: the posterior median count per bin
  with its 90% band, from per-sample histograms ``counts_SB`` over bins ``edges``."""
  from matplotlib.ticker import FormatStrFormatter, LogLocator

  used = np.flatnonzero(np.asarray(counts_SB).max(0) > 0)
  lo, hi = (used.min(), used.max() + 1) if used.size else (0, len(edges) - 1)
  counts, edges = np.asarray(counts_SB)[:, lo:hi], np.asarray(edges)[lo:hi + 1]
  q05, q50, q95 = np.quantile(counts, [0.05, 0.5, 0.95], axis=0)
  fig, ax = plt.subplots(figsize=(6.4, 3.8))
  ax.stairs(q50, edges, color="tab:blue", linewidth=1.5, label="posterior median")
  ax.stairs(q95, edges, baseline=q05, fill=True, color="tab:blue", alpha=0.25,
            label="90% credible band")
  ax.set_xscale("log")
  ax.xaxis.set_minor_locator(LogLocator(base=10, subs=(2.0, 5.0)))  # Labelled: 2, 5, 20, ...
  for axis in (ax.xaxis.set_major_formatter, ax.xaxis.set_minor_formatter):
    axis(FormatStrFormatter("%g"))
  ax.tick_params(axis="x", which="minor", labelsize=7)
  ax.set_xlabel(f"droplet diameter ({unit_label})")
  ax.set_ylabel("droplets per bin")
  ax.legend(fontsize=8)
  ax.set_title(title, fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
