"""Rendering one catalog noise-free with a decoder, in strips so large images fit in memory."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from dropamort.config import ModelConfig
from dropamort.model.catalog import Catalog
from dropamort.model.decoder import DropletOpticsModel, bind
from dropamort.model.model import decoder_module
from dropamort.model.render import render_local


@functools.lru_cache(maxsize=8)
def _renderer(module: DropletOpticsModel, height: int, width: int, cell: int, reach: float,
              reach_cells: int):
  """Jitted renderer for one strip shape (cached: strips of one image share it)."""
  return jax.jit(lambda params, catalog: render_local(
      bind(module, params), catalog, height=height, width=width, cell=cell, reach=reach,
      reach_cells=reach_cells))


def reconstruct(cfg: ModelConfig, decoder_params, catalog: Catalog, *, height: int,
                width: int, strip_cells: int = 128) -> np.ndarray:
  """Noise-free render of one catalog (a batch of one), (height, width, C).

  Renders ``strip_cells`` rows of cells at a time, each with a halo of the cells that can
  reach it, so memory stays bounded on large images. Radii are clipped to the model's
  bounds: the renderer only searches as far as ``radius_max`` reaches.
  """
  catalog = catalog.replace(radius_BYX=jnp.clip(catalog.radius_BYX, cfg.radius_min,
                                                cfg.radius_max))
  gy, gx = catalog.grid_shape
  k = cfg.reach_cells
  out = np.zeros((gy * cfg.cell, gx * cfg.cell, cfg.channels), np.float32)
  for y0 in range(0, gy, strip_cells):
    y1 = min(gy, y0 + strip_cells)
    a, b = max(0, y0 - k), min(gy, y1 + k)
    part = catalog.crop(a, 0, b - a, gx)
    render = _renderer(decoder_module(cfg), (b - a) * cfg.cell, gx * cfg.cell, cfg.cell,
                       cfg.reach, k)
    img = render(decoder_params, part)[0]
    out[y0 * cfg.cell:y1 * cfg.cell] = np.asarray(img)[(y0 - a) * cfg.cell:(y1 - a) * cfg.cell]
  return out[:height, :width]
