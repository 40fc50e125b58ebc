"""A picture of simulated images: what the generative model draws, next to its truth.

    python -m dropamort.model.preview --out preview.png [--real IMAGE --scale 0.25]

Shows a simulated image, the same image with its true catalog drawn as circles, and,
when ``--real`` is given, a real image at the same size for comparison.
"""

from __future__ import annotations

import argparse
import dataclasses
import os

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from dropamort.config import ModelConfig  # noqa: E402
from dropamort.figures import draw_catalog, save_figure  # noqa: E402
from dropamort.model.catalog import to_table  # noqa: E402
from dropamort.model.model import configured_decoder_params  # noqa: E402
from dropamort.model.simulate import make_simulate  # noqa: E402


def save_preview(path: str, cfg: ModelConfig, key, real: np.ndarray | None = None):
  """Simulates one image with ``cfg`` and saves the panels to ``path`` (PNG)."""
  params = configured_decoder_params(cfg)
  images, catalog = make_simulate(cfg, 1)(key, params)
  image = np.clip(np.asarray(images[0]), 0, 1)
  table = to_table(catalog, cfg.cell)[0]
  panels = [("simulated", image, None), (f"true catalog ({len(table['x'])} droplets)", image,
                                         table)]
  if real is not None:
    panels.append(("real", real, None))
  fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.4), squeeze=False)
  for ax, (title, img, tab) in zip(axes[0], panels):
    ax.imshow(img, interpolation="nearest")
    if tab is not None:
      draw_catalog(ax, tab)
    ax.set_xlim(-0.5, img.shape[1] - 0.5)
    ax.set_ylim(img.shape[0] - 0.5, -0.5)
    ax.set_title(title)
    ax.set_axis_off()
  fig.tight_layout()
  save_figure(fig, path, dpi=110)


def main():
  ap = argparse.ArgumentParser(description="Save a picture of a simulated droplet image.")
  ap.add_argument("--out", default="preview.png")
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--height", type=int, default=380)
  ap.add_argument("--width", type=int, default=507)
  ap.add_argument("--real", default=None, help="a real image to show beside it")
  ap.add_argument("--scale", type=float, default=0.25, help="resize factor for --real")
  args = ap.parse_args()
  real = None
  if args.real:
    with Image.open(args.real) as im:
      w, h = im.size
      im = im.convert("RGB").resize((int(w * args.scale), int(h * args.scale)))
      real = np.asarray(im) / 255.0
    args.height, args.width = real.shape[:2]
  base = ModelConfig()
  # Simulate on whole cells, then show the requested size.
  grid = lambda n: -(-n // base.cell) * base.cell
  cfg = dataclasses.replace(base, height=grid(args.height), width=grid(args.width))
  save_preview(args.out, cfg, jax.random.key(args.seed), real)
  print(f"saved {os.path.abspath(args.out)}")


if __name__ == "__main__":
  main()
