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
from dropamort.model.render import Layer, layer_inputs, render_layers


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
  module = decoder_module(cfg)

  def strip(specs, rows, parts):
    render = _renderer(module, specs, rows, width, cfg.reach)
    return np.asarray(render(decoder_params, parts)[0])

  return _by_strips(cfg, catalog, coarser, height, width, strip_px, strip)


@functools.lru_cache(maxsize=16)
def _inputs_fn(specs: tuple, height: int, width: int):
  """Jitted ``layer_inputs`` of one strip shape, packed (``pack``)."""
  def inputs(catalogs):
    layers = [Layer(c, cell, k, r_scale) for c, (cell, k, r_scale) in zip(catalogs, specs)]
    return pack(layer_inputs(layers, height=height, width=width))

  return jax.jit(inputs)


def decoder_inputs(cfg: ModelConfig, catalog: Catalog, *, height: int, width: int,
                   coarser: tuple = (), strip_px: int = 512) -> np.ndarray:
  """What the decoder is asked at every pixel of ``reconstruct``'s render (same
  arguments), packed (``pack``): (height, width, C + 4 + T). ``shade`` of the unpacked
  inputs with a decoder is that decoder's render, pixel for pixel."""
  def strip(specs, rows, parts):
    return np.asarray(_inputs_fn(specs, rows, width)(parts)).reshape(rows, width, -1)

  return _by_strips(cfg, catalog, coarser, height, width, strip_px, strip)


def pack(inputs) -> jnp.ndarray:
  """``layer_inputs``' (bg_PC, d2_P, dx_P, dy_P, r_P, comp_PT) as one (P, C + 4 + T)
  array."""
  bg, d2, dx, dy, r, comp = inputs
  return jnp.concatenate([bg, jnp.stack([d2, dx, dy, r], -1), comp], -1)


def unpack(packed_PK, channels: int):
  """The inverse of ``pack``: (bg_PC, d2_P, dx_P, dy_P, r_P, comp_PT)."""
  c = channels
  return (packed_PK[:, :c], packed_PK[:, c], packed_PK[:, c + 1], packed_PK[:, c + 2],
          packed_PK[:, c + 3], packed_PK[:, c + 4:])


def _by_strips(cfg: ModelConfig, catalog: Catalog, coarser: tuple, height: int, width: int,
               strip_px: int, strip) -> np.ndarray:
  """``strip(specs, rows, parts)`` over horizontal strips of the image, each with the
  halo its droplets can reach from, cut back to the strip and stacked: (height, width, K).
  ``parts`` are the layers' catalogs cropped to the strip (radii in base pixels) and
  ``specs`` their (cell, reach_cells, r_scale)."""
  clip = lambda c: c.replace(radius_BYX=jnp.clip(c.radius_BYX, cfg.radius_min, cfg.radius_max))
  layers = [(1, clip(catalog))] + [(f, clip(c)) for f, c in coarser]
  # Strips start on the coarsest grid, so every layer's crop starts on one of its cells.
  unit = cfg.cell * max(f for f, _ in layers)
  halo = int(np.ceil(cfg.reach * cfg.radius_max * max(f for f, _ in layers) / unit)) * unit
  step = max(unit, strip_px // unit * unit)
  out = None
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
    part_out = strip(tuple(specs), b - a, parts)[y0 - a:y1 - a]
    if out is None:  # One output, written strip by strip: no strip outlives its turn.
      out = np.empty((height, width, part_out.shape[-1]), np.float32)
    out[y0:y1] = part_out
  return out
