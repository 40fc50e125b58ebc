"""The real images of a calibration run, read at every pyramid level, and what the run
measures on them.

The images are split once (``data.real.split_holdout``): the wake stage and the prior
refit see only the fitted part; the held-out part judges every round (reconstruction
RMSE of the posterior point estimate, against a flat mean colour) and the wake stage's
convergence, and picks the ``calibrated`` checkpoint. Every image is read as a pyramid,
as inference reads it, so calibration fits droplets of every size: at each level the
band's droplets are modelled and the pixels of larger droplets (kept at coarser levels)
are left out of the likelihood.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import numpy as np

from dropamort.config import CalibrateConfig, DataConfig, ModelConfig
from dropamort.data.images import find_images
from dropamort.data.real import load_real, split_holdout
from dropamort.encoder.posterior import CatalogPosterior
from dropamort.training.misfit import bootstrap_widen
from dropamort.pyramid import LevelResult, merged_candidates, point_mask, read, render_levels

COVER = 1.25  # Pixels within this many radii of a larger droplet are left out.
OFF_LOGIT = -30.0


@dataclasses.dataclass
class View:
  """One pyramid level of one real image as the wake stage sees it."""

  image: np.ndarray  # The level's image.
  posterior: CatalogPosterior  # Its posterior, cells inside larger droplets switched off.
  weight: np.ndarray  # (H, W): 1 where scored, 0 under a larger droplet.
  factor: int = 1  # Base image pixels per pixel of the level.


class RealImages:
  """The fitted and held-out real images and their pyramids (structure only)."""

  def __init__(self, data: DataConfig, model: ModelConfig, calibrate: CalibrateConfig):
    crop = calibrate.wake_crop
    images = load_real(data, model.channels, (crop, crop))
    n_all = len(find_images(data.real))
    n_used = n_all if data.max_images is None else min(n_all, data.max_images)
    # What to tell the user about the choice of images (None: all of them).
    self.note = None if n_used == n_all else (
        f"calibrating on {n_used} of the {n_all} images in {data.real}, evenly spaced by "
        f"name (data.max_images={data.max_images}; null for all)")
    self.fitted, self.held_out = split_holdout(images, calibrate.holdout, crop)
    self.model = model

  def read(self, posteriors, images) -> list[list[LevelResult]]:
    """Every level of every image read as inference reads it (``pyramid.read``):
    ``posteriors(level images)`` is the encoder's (``pyramid.Encoding.posteriors`` with
    the state's parameters bound: tiled, batched) or a stand-in's (LoG blobs)."""
    return read(posteriors, images, self.model)

  def views(self, read: list[list[LevelResult]], threshold: float) -> list[View]:
    """Every level of every image as a wake view (see ``View``)."""
    out = []
    for levels in read:
      cands = merged_candidates(levels, self.model, threshold)
      for lr in levels:
        out.append(_view(lr, cands, threshold, self.model.cell))
    return out

  def points(self, decoder_params, levels: list[LevelResult], threshold: float):
    """(point catalog, noise-free render at the base size) of one image's levels."""
    cands = merged_candidates(levels, self.model, threshold)
    recon = render_levels(self.model, decoder_params, levels, cands, threshold)
    return {k: np.asarray(v)[point_mask(cands, threshold)] for k, v in cands.items()}, recon

  def record(self, points: list[tuple[dict, np.ndarray]]) -> dict:
    """Held-out reconstruction RMSE (all pixels pooled) from ``points`` of the held-out
    images, a flat mean colour's RMSE on the same images, droplets per image."""
    sq = flat = n = count = 0.0
    for image, (table, recon) in zip(self.held_out, points):
      sq += float(np.sum((recon - image) ** 2))
      flat += float(np.sum((image - image.mean((0, 1))) ** 2))
      n += image.size
      count += len(table["x"])
    return {"real_rmse": math.sqrt(sq / n), "flat_rmse": math.sqrt(flat / n),
            "count_per_image": count / len(self.held_out)}

  def widen(self, posteriors, decoder_params, threshold: float,
            rng: np.random.Generator, points) -> tuple[np.ndarray, int]:
    """The posterior widening factors for x, y, log r that the held-out images' own
    residuals call for (``dropamort.training.misfit``; ``points`` are their first reads),
    and the droplets they rest on."""
    read = lambda image: self.points(decoder_params, self.read(posteriors, [image])[0],
                                     threshold)
    return bootstrap_widen(read, self.held_out, points, rng)


def _view(lr: LevelResult, cands: dict, threshold: float, cell: int) -> View:
  """Level ``lr`` with the droplets kept at coarser levels masked out."""
  f = lr.level.factor
  big = (cands["level"] > lr.level.index) & point_mask(cands, threshold)
  bx, by, br = (np.asarray(cands[k])[big] / f for k in ("x", "y", "r"))
  h, w = lr.image.shape[:2]
  weight = np.ones((h, w), np.float32)
  for x, y, r in zip(bx, by, br):
    reach = COVER * r
    y0, y1 = max(0, int(y - reach)), min(h, int(y + reach) + 1)
    x0, x1 = max(0, int(x - reach)), min(w, int(x + reach) + 1)
    yy, xx = np.mgrid[y0:y1, x0:x1] + 0.5
    weight[y0:y1, x0:x1][(xx - x) ** 2 + (yy - y) ** 2 < reach**2] = 0.0
  post = jax.tree.map(np.asarray, lr.posterior)
  gy, gx = post.on_logit_BYX.shape[1:]
  col, row = np.meshgrid(np.arange(gx), np.arange(gy))
  sig = 1 / (1 + np.exp(-post.offset_loc_BYX2[0]))
  cx, cy = (col + sig[..., 0]) * cell, (row + sig[..., 1]) * cell
  inside = np.zeros((gy, gx), bool)
  for x, y, r in zip(bx, by, br):
    inside |= (cx - x) ** 2 + (cy - y) ** 2 < r**2
  on_logit = np.where(inside[None], OFF_LOGIT, post.on_logit_BYX)
  return View(lr.image, post.replace(on_logit_BYX=on_logit), weight, f)


def band_stats(read: list[list[LevelResult]], model: ModelConfig, threshold: float,
               log_scale: float = 0.0):
  """What a training crop sees, pooled over every level of the fitted images: radii (own
  pixels) of the band's droplets, the levels' total area, and the share of that area
  covered by larger droplets (kept at coarser levels); every read radius is taken times
  exp(``log_scale``) (the outline's radius scale, ``Prior.outline``)."""
  radii, area, covered = [], 0.0, 0.0
  for levels in read:
    cands = merged_candidates(levels, model, threshold)
    sure = point_mask(cands, threshold)
    for lr in levels:
      f = lr.level.factor
      h, w = lr.image.shape[:2]
      r = np.asarray(cands["r"]) * math.exp(log_scale) / f
      mine = sure & (r >= model.radius_min) & (r < model.radius_max) & (
          np.asarray(cands["level"]) <= lr.level.index)
      radii.append(r[mine])
      bigger = sure & (r >= model.radius_max)
      covered += float(np.sum(math.pi * r[bigger] ** 2))
      area += h * w
  return np.concatenate(radii), area, covered / max(area, 1.0)
