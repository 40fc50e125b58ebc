"""The smooth background field: knots -> cell centres -> pixels, by bilinear interpolation.

An image's background (decoder units, pre-sigmoid) is its mean level plus a smooth field:
deviations on a coarse grid of knots every ``background_knot`` px, interpolated to the
centres of the catalog's cells. The catalog carries the background per cell; the renderer
interpolates the cell values to pixels. A constant background is the case of equal cells.

Interpolation is separable and gathers two neighbours per axis (no dense matrices), with
positions clamped to the outermost samples (edges extend flat).
"""

from __future__ import annotations

import jax.numpy as jnp


def _axis_weights(positions, n: int):
  """Lower neighbour index and weight of the upper one, for sample positions in units of
  the sample spacing (sample i sits at i)."""
  p = jnp.clip(positions, 0.0, n - 1.0)
  lo = jnp.clip(jnp.floor(p).astype(jnp.int32), 0, max(n - 2, 0))
  return lo, jnp.clip(p - lo, 0.0, 1.0) if n > 1 else jnp.zeros_like(p)


def interpolate(values_BYXC, rows, cols):
  """Bilinear interpolation of a grid of samples at (rows, cols) (in sample units; may be
  traced). Returns (B, len(rows), len(cols), C)."""
  gy, gx = values_BYXC.shape[1:3]
  r0, wr = _axis_weights(rows, gy)
  c0, wc = _axis_weights(cols, gx)
  r1, c1 = jnp.minimum(r0 + 1, gy - 1), jnp.minimum(c0 + 1, gx - 1)
  v = (values_BYXC[:, r0] * (1 - wr)[None, :, None, None]
       + values_BYXC[:, r1] * wr[None, :, None, None])
  return v[:, :, c0] * (1 - wc)[None, None, :, None] + v[:, :, c1] * wc[None, None, :, None]


def pixel_background(background_BYXC, cell: int, height: int, width: int, origin: int = 0):
  """The per-pixel background (B, height, width, C) of per-cell values: cell (a, b)'s value
  sits at its centre ((a + 0.5)·cell, (b + 0.5)·cell); the pixels of the window that
  starts ``origin`` px from the grid's top-left corner."""
  rows = (jnp.arange(height, dtype=jnp.float32) + 0.5 + origin) / cell - 0.5
  cols = (jnp.arange(width, dtype=jnp.float32) + 0.5 + origin) / cell - 0.5
  return interpolate(background_BYXC, rows, cols)


def knot_shape(height: int, width: int, knot: int) -> tuple[int, int]:
  """Knots every ``knot`` px covering [0, height] × [0, width]."""
  return -(-height // knot) + 1, -(-width // knot) + 1


def cell_background(mean_BC, field_BKKC, *, grid: tuple[int, int], cell: int, knot: int,
                    offset=(0.0, 0.0)):
  """Per-cell background: the mean plus the knot field at the cell centres. ``offset``
  (y, x) px moves the grid's origin within the field (a shifted crop)."""
  gy, gx = grid
  rows = ((jnp.arange(gy, dtype=jnp.float32) + 0.5) * cell + offset[0]) / knot
  cols = ((jnp.arange(gx, dtype=jnp.float32) + 0.5) * cell + offset[1]) / knot
  return mean_BC[:, None, None, :] + interpolate(field_BKKC, rows, cols)


def local_mean(image_BHWC, cell: int, window: int):
  """Mean colour of each cell's neighbourhood (``window`` cells square, clipped at the
  image border), at cell resolution: a fixed feature, so tiles and whole images agree
  wherever the tile overlap covers the window."""
  b, h, w, c = image_BHWC.shape
  cells = image_BHWC.reshape(b, h // cell, cell, w // cell, cell, c).mean((2, 4))
  ones = jnp.ones_like(cells[..., :1])
  box = lambda a: _box(_box(a, window, 1), window, 2)
  return box(cells) / box(ones)


def _box(a, window: int, axis: int):
  """Sum over a centred window along ``axis`` (zero beyond the edges), by cumulative sums."""
  half = window // 2
  pad = [(0, 0)] * a.ndim
  pad[axis] = (half + 1, half)
  c = jnp.cumsum(jnp.pad(a, pad), axis=axis)
  n = a.shape[axis]
  take = lambda start: jnp.take(c, jnp.arange(start, start + n), axis=axis)
  return take(window) - take(0)
