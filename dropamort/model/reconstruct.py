"""Rendering catalogs noise-free with a decoder, in strips so large images fit in memory.

A catalog read at several pyramid levels renders as scale layers: level k's catalog lies
on a grid of cell·2^k base pixels, its radii are 2^k times its own, and the decoder sees
them at their own level (``render.Layer.r_scale``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from dropamort.config import ModelConfig
from dropamort.model.catalog import Catalog
from dropamort.model.decoder import DropletOpticsModel, bind
from dropamort.model.model import decoder_module
from dropamort.model.render import Layer, render_layers


@functools.lru_cache(maxsize=16)
def _renderer(module: DropletOpticsModel, specs: tuple, height: int, width: int,
              reach: float):
  """Jitted renderer for one strip shape and set of layers (cached: strips share it)."""
  def render(params, catalogs):
    layers = [Layer(c, cell, k, r_scale) for c, (cell, k, r_scale) in zip(catalogs, specs)]
    return render_layers(bind(module, params), layers, height=height, width=width,
                         reach=reach)

  return jax.jit(render)


def _pad_rows(catalog: Catalog, rows: int) -> Catalog:
  """Empty cells added below a catalog to reach ``rows`` rows."""
  extra = rows - catalog.grid_shape[0]
  if extra <= 0:
    return catalog
  pad = lambda a, mode: jnp.pad(a, [(0, 0), (0, extra)] + [(0, 0)] * (a.ndim - 2), mode=mode)
  return catalog.replace(
      on_BYX=pad(catalog.on_BYX, "constant"), offset_BYX2=pad(catalog.offset_BYX2, "edge"),
      radius_BYX=pad(catalog.radius_BYX, "edge"),
      composition_BYXT=pad(catalog.composition_BYXT, "edge"),
      background_BYXC=pad(catalog.background_BYXC, "edge"))


def reconstruct(cfg: ModelConfig, decoder_params, catalog: Catalog, *, height: int,
                width: int, coarser: tuple = (), strip_px: int = 512) -> np.ndarray:
  """Noise-free render of one catalog (a batch of one), (height, width, C).

  Args:
    catalog: the base level's catalog (its background is the image's).
    coarser: (factor, catalog) of coarser pyramid levels: their grids have cells of
      cell·factor base pixels and their radii are in their own level's pixels.
    strip_px: rows rendered at a time (memory stays bounded on large images).

  Radii are clipped to the model's bounds: the renderer only searches as far as
  ``radius_max`` reaches.
  """
  clip = lambda c: c.replace(radius_BYX=jnp.clip(c.radius_BYX, cfg.radius_min, cfg.radius_max))
  layers = [(1, clip(catalog))] + [(f, clip(c)) for f, c in coarser]
  # Strips start on the coarsest grid, so every layer's crop starts on one of its cells.
  unit = cfg.cell * max(f for f, _ in layers)
  halo = int(np.ceil(cfg.reach * cfg.radius_max * max(f for f, _ in layers) / unit)) * unit
  step = max(unit, strip_px // unit * unit)
  out = np.zeros((height, width, cfg.channels), np.float32)
  module = decoder_module(cfg)
  for y0 in range(0, height, step):
    y1 = min(height, y0 + step)
    a, b = max(0, y0 - halo), min(-(-height // unit) * unit, y1 + halo)
    parts, specs = [], []
    for f, cat in layers:
      cell = cfg.cell * f
      rows = -(-(b - a) // cell)
      part = _pad_rows(cat.crop(a // cell, 0, rows, cat.grid_shape[1]), rows)
      parts.append(part.replace(radius_BYX=part.radius_BYX * f))  # In base pixels.
      specs.append((cell, cfg.reach_cells, float(f)))
    render = _renderer(module, tuple(specs), b - a, width, cfg.reach)
    img = np.asarray(render(decoder_params, parts)[0])
    out[y0:y1] = img[y0 - a:y1 - a]
  return out
