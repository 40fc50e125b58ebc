"""The real images of a calibration run and what the run measures on them.

The images are split once (``data.real.split_holdout``): the wake stage and the prior
refit see only the fitted part; the held-out part judges every round (reconstruction
RMSE of the posterior point estimate, against a flat mean colour), and picks the
``calibrated`` checkpoint.
"""

from __future__ import annotations

import math

import numpy as np

from dropamort.config import CalibrateConfig, DataConfig, ModelConfig
from dropamort.data.real import load_real, split_holdout
from dropamort.encoder.posterior import CatalogPosterior
from dropamort.model.reconstruct import reconstruct


def pad_to_cells(image_HWC: np.ndarray, cell: int) -> np.ndarray:
  """Edge-pads an image to whole cells."""
  h, w = image_HWC.shape[:2]
  return np.pad(image_HWC, [(0, -h % cell), (0, -w % cell), (0, 0)], mode="edge")


class RealImages:
  """The fitted and held-out real images (structure only; no per-round state)."""

  def __init__(self, data: DataConfig, model: ModelConfig, calibrate: CalibrateConfig):
    crop = calibrate.wake_crop
    images = load_real(data, model.channels, (crop, crop))
    self.fitted, self.held_out = split_holdout(images, calibrate.holdout, crop)
    self.cell = model.cell

  def posteriors(self, posterior_fn, params, images) -> list[CatalogPosterior]:
    """The encoder's posterior of each whole image (cell-padded grid, batch of one)."""
    return [posterior_fn(params, pad_to_cells(im, self.cell)[None]) for im in images]

  def grids(self, images) -> list[tuple[int, int]]:
    """Whole cells inside each image (where crops may sit)."""
    return [(im.shape[0] // self.cell, im.shape[1] // self.cell) for im in images]

  def record(self, model: ModelConfig, decoder_params, posteriors, threshold: float) -> dict:
    """Held-out reconstruction RMSE (all pixels pooled), a flat mean colour's RMSE on the
    same images, and droplets per held-out image."""
    sq = flat = n = count = 0.0
    for image, post in zip(self.held_out, posteriors):
      h, w = image.shape[:2]
      recon = reconstruct(model, decoder_params, post.point(threshold), height=h, width=w)
      sq += float(np.sum((recon - image) ** 2))
      flat += float(np.sum((image - image.mean((0, 1))) ** 2))
      n += image.size
      t = post.to_table(self.cell, threshold)[0]
      count += int(np.sum((t["x"] < w) & (t["y"] < h)))
    return {"real_rmse": math.sqrt(sq / n), "flat_rmse": math.sqrt(flat / n),
            "count_per_image": count / len(self.held_out)}


def radii_and_area(posteriors, images, cell: int, threshold: float):
  """Radii of the droplets the posteriors list inside the images, and the images' area."""
  radii, area = [], 0.0
  for post, image in zip(posteriors, images):
    h, w = image.shape[:2]
    t = post.to_table(cell, threshold)[0]
    radii.append(np.asarray(t["r"])[(t["x"] < w) & (t["y"] < h)])
    area += h * w
  return np.concatenate(radii), area
