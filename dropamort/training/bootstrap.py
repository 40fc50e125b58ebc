"""A first catalog for a real image from a classical detector (Laplacian-of-Gaussian
blobs), used when no encoder exists yet or the encoder finds too little, so the wake
phase does not start from droplets piled up in the middle of the image."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logit
from scipy.ndimage import median_filter
from skimage.feature import blob_log

from dropamort.encoder.posterior import CatalogPosterior


def log_blobs(image_HWC: np.ndarray, radius_max: float, threshold: float = 0.05):
  """(x, y, r) of dark blobs: LoG on the inverted grey image; r = sigma·sqrt(2)."""
  grey = 1.0 - image_HWC.mean(-1)
  blobs = blob_log(grey, min_sigma=0.7, max_sigma=radius_max / np.sqrt(2), num_sigma=10,
                   threshold=threshold)
  y, x, s = blobs.T if len(blobs) else np.zeros((3, 0))
  return x + 0.5, y + 0.5, s * np.sqrt(2)  # Pixel centres sit at +0.5.


def local_background(image_HWC: np.ndarray, cell: int, window: int = 8,
                     percentile: float = 75.0) -> np.ndarray:
  """Per cell (gy, gx, C): an upper percentile of the cell's pixels (the blobs are darker
  than what surrounds them), smoothed by a median over ``window`` × ``window`` cells."""
  h, w, c = image_HWC.shape
  gy, gx = -(-h // cell), -(-w // cell)
  padded = np.pad(image_HWC, [(0, gy * cell - h), (0, gx * cell - w), (0, 0)], mode="edge")
  blocks = padded.reshape(gy, cell, gx, cell, c).transpose(0, 2, 1, 3, 4).reshape(gy, gx, -1, c)
  per_cell = np.percentile(blocks, percentile, axis=2)
  return median_filter(per_cell, size=(window, window, 1), mode="nearest").clip(0.01, 0.99)


def blob_posterior(image_HWC: np.ndarray, cell: int, radius_max: float,
                   types: int) -> CatalogPosterior:
  """A sharp posterior holding the LoG blobs (the larger blob wins a shared cell)."""
  h, w = image_HWC.shape[:2]
  gy, gx = -(-h // cell), -(-w // cell)
  x, y, r = log_blobs(image_HWC, radius_max)
  on = np.zeros((gy, gx), bool)
  off = np.full((gy, gx, 2), 0.5, np.float32)
  rad = np.ones((gy, gx), np.float32)
  for k in np.argsort(r):  # Ascending: larger blobs overwrite smaller ones.
    row, col = min(int(y[k] // cell), gy - 1), min(int(x[k] // cell), gx - 1)
    on[row, col] = True
    off[row, col] = np.clip([x[k] / cell - col, y[k] / cell - row], 0.01, 0.99)
    rad[row, col] = np.clip(r[k], 0.5, radius_max)
  bg = local_background(image_HWC, cell)
  small = lambda shape: jnp.full(shape, 0.05)
  return CatalogPosterior(
      on_logit_BYX=jnp.where(jnp.asarray(on), 20.0, -20.0)[None],
      offset_loc_BYX2=logit(jnp.asarray(off))[None], offset_scale_BYX2=small((1, gy, gx, 2)),
      logr_loc_BYX=jnp.log(jnp.asarray(rad))[None], logr_scale_BYX=small((1, gy, gx)),
      comp_loc_BYXT=jnp.zeros((1, gy, gx, types)), comp_scale_BYXT=jnp.ones((1, gy, gx, types)),
      bg_loc_BYXC=logit(jnp.asarray(bg, jnp.float32))[None], bg_scale_BYXC=small((1,) + bg.shape))
