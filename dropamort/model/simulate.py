"""On-the-fly simulation of training images from the NumPyro model (jittable).

Each image is simulated on a canvas with ``margin`` cells on every side and cropped, so
droplets cut by the frame occur in training. With ``shift`` the crop starts at a random
sub-cell offset, and the catalog is re-binned onto the crop's grid, so that nothing the
encoder learns depends on where the grid falls relative to the droplets.
"""

from __future__ import annotations

import dataclasses
import jax
import jax.numpy as jnp
from numpyro import handlers

from dropamort.config import ConfigError, ModelConfig
from dropamort.model.background import interpolate
from dropamort.model.catalog import Catalog
from dropamort.model.model import droplet_model
from dropamort.model.prior import Prior


def canvas_config(cfg: ModelConfig) -> ModelConfig:
  """The model on the image plus ``margin`` cells on every side."""
  pad = 2 * cfg.margin * cfg.cell
  return dataclasses.replace(cfg, height=cfg.height + pad, width=cfg.width + pad, margin=0,
                             shift=False)


def rebin(catalog: Catalog, shift_B2, *, margin: int, grid: tuple[int, int], cell: int):
  """The catalog of the crop starting ``margin`` cells + ``shift`` px into the canvas.

  A crop cell overlaps (at most) 2×2 canvas cells; it takes the droplet whose centre
  falls inside it, the largest if several do (the others stay in the image but cannot be
  represented: the grid's recall ceiling, counted in the returned ``lost_B``).

  Args:
    catalog: the canvas catalog.
    shift_B2: integer (x, y) shifts in [0, cell) per image.
    margin, grid, cell: margin cells, crop grid (gy, gx), cell size.

  Returns:
    (crop catalog, lost_B).
  """
  gy, gx = grid
  cands = []
  for dy in (0, 1):
    for dx in (0, 1):
      part = catalog.crop(margin + dy, margin + dx, gy, gx)
      delta = jnp.array([dx, dy], jnp.float32)
      new_offset = (delta + part.offset_BYX2) - shift_B2[:, None, None, :] / cell
      inside = part.on_BYX & jnp.all((new_offset >= 0) & (new_offset < 1), axis=-1)
      cands.append((inside, new_offset, part))
  inside_BYXK = jnp.stack([c[0] for c in cands], -1)
  score = jnp.where(inside_BYXK, jnp.stack([c[2].radius_BYX for c in cands], -1), -jnp.inf)
  best_BYX1 = jnp.argmax(score, axis=-1)[..., None]
  pick = lambda arrays: jnp.take_along_axis(
      jnp.stack(arrays, 3), best_BYX1.reshape(best_BYX1.shape + (1,) * (arrays[0].ndim - 3)),
      axis=3)[:, :, :, 0]
  on = inside_BYXK.any(-1)
  crop = Catalog(on_BYX=on,
                 offset_BYX2=pick([c[1] for c in cands]),
                 radius_BYX=pick([c[2].radius_BYX for c in cands]),
                 composition_BYXT=pick([c[2].composition_BYXT for c in cands]),
                 background_BYXC=shifted_background(catalog.background_BYXC, shift_B2,
                                                    margin=margin, grid=grid, cell=cell))
  lost_B = (inside_BYXK.sum(-1) - on).sum(axis=(1, 2))
  return crop, lost_B


def shifted_background(background_BYXC, shift_B2, *, margin: int, grid, cell: int):
  """The canvas's per-cell background at the centres of the crop's cells."""
  gy, gx = grid

  def one(bg_YXC, shift_2):
    rows = margin + shift_2[1] / cell + jnp.arange(gy, dtype=jnp.float32)
    cols = margin + shift_2[0] / cell + jnp.arange(gx, dtype=jnp.float32)
    return interpolate(bg_YXC[None], rows, cols)[0]

  return jax.vmap(one)(background_BYXC, shift_B2.astype(jnp.float32))


def larger_tables(cfg: ModelConfig, larger, start_B2):
  """The larger layers' droplets in crop coordinates: (centres_BN2, radius_BN, on_BN)
  with ``on`` false for droplets centred outside the crop."""
  out = []
  for j, cat in enumerate(larger, start=1):
    b = cat.on_BYX.shape[0]
    centres = cat.centres_BYX2(cfg.larger(j)[0]).reshape(b, -1, 2) - start_B2[:, None, :]
    inside = jnp.all((centres >= 0) & (centres < jnp.array([cfg.width, cfg.height])), -1)
    out.append((centres, cat.radius_BYX.reshape(b, -1), cat.on_BYX.reshape(b, -1) & inside))
  return tuple(out)


def simulate(key, decoder_params, prior: Prior, *, cfg: ModelConfig, n: int,
             with_larger: bool = False):
  """Simulates ``n`` images and their true catalogs, with no Python loop over either.

  ``cfg``, ``n`` and ``with_larger`` are static: bind them (``make_simulate``) before
  jitting; the decoder parameters and the ``prior`` are data.

  Returns:
    images_BHWC and the band's ``Catalog`` batch (droplets whose centres lie in the
    image); with ``with_larger`` also the larger layers' ``larger_tables``.
  """
  if cfg.height % cfg.cell or cfg.width % cfg.cell:
    raise ConfigError(f"model.height/model.width must be multiples of model.cell "
                      f"({cfg.cell}) to simulate (got {(cfg.height, cfg.width)})")
  model_key, shift_key = jax.random.split(key)
  with handlers.seed(rng_seed=model_key), handlers.trace() as tr:
    catalog, larger = droplet_model(canvas_config(cfg), prior, decoder_params, None, n)
  canvas_BHWC = tr["image"]["value"]
  if cfg.shift:
    shift_B2 = jax.random.randint(shift_key, (n, 2), 0, cfg.cell)
  else:
    shift_B2 = jnp.zeros((n, 2), jnp.int32)
  start = cfg.margin * cfg.cell + shift_B2
  crop_image = lambda img, s: jax.lax.dynamic_slice(
      img, (s[1], s[0], 0), (cfg.height, cfg.width, cfg.channels))
  images = jax.vmap(crop_image)(canvas_BHWC, start)
  gy, gx = cfg.grid_shape
  if cfg.shift:
    catalog, _ = rebin(catalog, shift_B2, margin=cfg.margin, grid=(gy, gx), cell=cfg.cell)
  else:
    catalog = catalog.crop(cfg.margin, cfg.margin, gy, gx)
  if with_larger:
    return images, catalog, larger_tables(cfg, larger, start)
  return images, catalog


def make_simulate(cfg: ModelConfig, n: int, with_larger: bool = False):
  """``simulate`` with its static configuration bound and jitted:
  ``f(key, decoder_params, prior=None)``; no prior means ``cfg``'s starting values."""
  def sim(key, decoder_params, prior=None):
    return simulate(key, decoder_params, Prior.from_config(cfg) if prior is None else prior,
                    cfg=cfg, n=n, with_larger=with_larger)

  return jax.jit(sim)
