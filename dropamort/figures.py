"""Drawing helpers shared by every picture the project writes (matplotlib, no screen)."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
from matplotlib.collections import PatchCollection  # noqa: E402
from matplotlib.patches import Circle  # noqa: E402


def draw_catalog(ax, table, color="lime", linewidth=0.6):
  """Circles at (x, y) with radius r; pixel centres sit at integer + 0.5."""
  circles = [Circle((x - 0.5, y - 0.5), r) for x, y, r in zip(table["x"], table["y"], table["r"])]
  ax.add_collection(PatchCollection(circles, facecolor="none", edgecolor=color,
                                    linewidth=linewidth))


def save_figure(fig, path: str, dpi: int = 100) -> None:
  """Writes ``fig`` to ``path`` through a temporary file, so a reader never sees half a
  picture, and closes it."""
  import matplotlib.pyplot as plt

  root, ext = os.path.splitext(path)
  tmp = f"{root}.tmp{ext or '.png'}"
  fig.savefig(tmp, dpi=dpi)
  plt.close(fig)
  os.replace(tmp, path)
