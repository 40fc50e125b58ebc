"""The latent droplet catalog on a grid of cells, and its flat-table form.

Dimension letters: B images, Y/X cell rows/columns, T composition types, C channels,
N droplets in a flat table.

Coordinates: pixel (row i, column j) covers [j, j+1) × [i, i+1); its centre is
(j + 0.5, i + 0.5). Cell (a, b) covers x in [b·cell, (b+1)·cell) and y in
[a·cell, (a+1)·cell); a droplet's ``offset`` (x, y) in [0, 1)² places it inside its cell.
"""

from __future__ import annotations

import flax.struct
import jax.numpy as jnp
import numpy as np


@flax.struct.dataclass
class Catalog:
  """A batch of droplet catalogs, one slot per cell. Factors count only where ``on``."""

  on_BYX: jnp.ndarray  # bool
  offset_BYX2: jnp.ndarray  # (x, y) within the cell, in [0, 1)
  radius_BYX: jnp.ndarray  # pixels
  composition_BYXT: jnp.ndarray  # in [0, 1]
  background_BYXC: jnp.ndarray  # decoder units (pre-sigmoid), the smooth field per cell

  @property
  def grid_shape(self) -> tuple[int, int]:
    return self.on_BYX.shape[-2:]

  def centres_BYX2(self, cell: int) -> jnp.ndarray:
    """Droplet centres (x, y) in image pixels, for every cell (on or not).

    Works for any leading batch dimensions (e.g. posterior samples × images).
    """
    gy, gx = self.grid_shape
    corner_YX2 = jnp.stack(
        jnp.meshgrid(jnp.arange(gx), jnp.arange(gy), indexing="xy"), axis=-1)
    return (corner_YX2 + self.offset_BYX2) * cell

  def crop(self, top: int, left: int, gy: int, gx: int) -> "Catalog":
    """The sub-grid of ``gy × gx`` cells starting at cell (top, left)."""
    sl = (slice(None), slice(top, top + gy), slice(left, left + gx))
    return self.replace(
        on_BYX=self.on_BYX[sl], offset_BYX2=self.offset_BYX2[sl],
        radius_BYX=self.radius_BYX[sl], composition_BYXT=self.composition_BYXT[sl],
        background_BYXC=self.background_BYXC[sl])


def outlined(catalog: Catalog, log_s) -> Catalog:
  """The catalog with every radius times s = exp(``log_s``): where a calibration's outline
  search (``training.outline``) finds the real images put the droplets' outlines relative
  to the encoder's reads (``Prior.outline``); 0 changes nothing."""
  return catalog.replace(radius_BYX=catalog.radius_BYX * jnp.exp(log_s))


def to_table(catalog: Catalog, cell: int) -> list[dict[str, np.ndarray]]:
  """Flat droplet tables, one per image: x, y, r (px), composition (N, T).

  Only droplets that are on are listed, in row-major cell order.
  """
  centres = np.asarray(catalog.centres_BYX2(cell))
  on = np.asarray(catalog.on_BYX, dtype=bool)
  radius = np.asarray(catalog.radius_BYX)
  comp = np.asarray(catalog.composition_BYXT)
  tables = []
  for b in range(on.shape[0]):
    m = on[b]
    tables.append({"x": centres[b][m][:, 0], "y": centres[b][m][:, 1],
                   "r": radius[b][m], "composition": comp[b][m]})
  return tables


def from_table(table: dict[str, np.ndarray], background, grid_shape, cell: int) -> Catalog:
  """One image's flat table back onto the cell grid (a batch of one); ``background`` is
  one value per channel (C,) or per cell (gy, gx, C).

  Raises:
    ValueError: two droplets fall into the same cell, or a droplet lies off the grid.
  """
  gy, gx = grid_shape
  x, y = np.asarray(table["x"], float), np.asarray(table["y"], float)
  comp = np.asarray(table["composition"], float).reshape(len(x), -1)
  col, row = np.floor(x / cell).astype(int), np.floor(y / cell).astype(int)
  if np.any((col < 0) | (col >= gx) | (row < 0) | (row >= gy)):
    raise ValueError("a droplet lies outside the cell grid")
  flat = row * gx + col
  if len(np.unique(flat)) != len(flat):
    raise ValueError("two droplets fall into the same cell")
  on = np.zeros((gy, gx), bool)
  offset = np.zeros((gy, gx, 2), np.float32)
  radius = np.ones((gy, gx), np.float32)
  composition = np.zeros((gy, gx, comp.shape[1]), np.float32)
  on[row, col] = True
  offset[row, col, 0] = x / cell - col
  offset[row, col, 1] = y / cell - row
  radius[row, col] = table["r"]
  composition[row, col] = comp
  return Catalog(on_BYX=jnp.asarray(on)[None], offset_BYX2=jnp.asarray(offset)[None],
                 radius_BYX=jnp.asarray(radius)[None],
                 composition_BYXT=jnp.asarray(composition)[None],
                 background_BYXC=jnp.broadcast_to(jnp.asarray(background, jnp.float32),
                                                  (gy, gx, np.shape(background)[-1]))[None])


def neighbour_index(gy: int, gx: int, k: int) -> jnp.ndarray:
  """For each cell, the flat indices of its (2k+1)² neighbours in the k-padded grid.

  Returns:
    nbr_YXM, indices into an array made by ``pad_flat(a, k, fill)``.
  """
  shift = jnp.arange(2 * k + 1)
  rows_YM = (jnp.arange(gy)[:, None] + shift[None, :]) * (gx + 2 * k)
  cols_XM = jnp.arange(gx)[:, None] + shift[None, :]
  return (rows_YM[:, None, :, None] + cols_XM[None, :, None, :]).reshape(gy, gx, -1)


def pad_flat(a_YX: jnp.ndarray, k: int, fill) -> jnp.ndarray:
  """Pads the two grid axes by k cells of ``fill`` and flattens them (trailing axes kept)."""
  padded = jnp.pad(a_YX, [(k, k), (k, k)] + [(0, 0)] * (a_YX.ndim - 2), constant_values=fill)
  return padded.reshape((-1,) + a_YX.shape[2:])
