"""A first catalog for a real image from a classical detector (Laplacian-of-Gaussian
blobs), used when no encoder exists yet or the encoder finds too little, so the wake
phase does not start from droplets piled up in the middle of the image."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logit
from skimage.feature import blob_log

from dropamort.encoder.posterior import CatalogPosterior


def log_blobs(image_HWC: np.ndarray, radius_max: float, threshold: float = 0.05):
  """(x, y, r) of dark blobs: LoG on the inverted grey image; r = sigma·sqrt(2)."""
  grey = 1.0 - image_HWC.mean(-1)
  blobs = blob_log(grey, min_sigma=0.7, max_sigma=radius_max / np.sqrt(2), num_sigma=10,
                   threshold=threshold)
  y, x, s = blobs.T if len(blobs) else np.zeros((3, 0))
  return x + 0.5, y + 0.5, s * np.sqrt(2)  # Pixel centres sit at +0.5.


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
  bg = np.median(image_HWC.reshape(-1, image_HWC.shape[-1]), 0).clip(0.01, 0.99)
  small = lambda shape: jnp.full(shape, 0.05)
  return CatalogPosterior(
      on_logit_BYX=jnp.where(jnp.asarray(on), 20.0, -20.0)[None],
      offset_loc_BYX2=logit(jnp.asarray(off))[None], offset_scale_BYX2=small((1, gy, gx, 2)),
      logr_loc_BYX=jnp.log(jnp.asarray(rad))[None], logr_scale_BYX=small((1, gy, gx)),
      comp_loc_BYXT=jnp.zeros((1, gy, gx, types)), comp_scale_BYXT=jnp.ones((1, gy, gx, types)),
      bg_loc_BC=logit(jnp.asarray(bg))[None], bg_scale_BC=small((1, len(bg))))
