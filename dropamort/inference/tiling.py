"""Overlapping tiles over the cell grid; each cell is taken from the tile where it is most
central, so every cell has at least ``overlap`` cells of context (except at the image
border) and memory stays bounded by the tile size."""

from __future__ import annotations

import numpy as np


def tile_starts(n_cells: int, tile: int, overlap: int) -> np.ndarray:
  """Start cells of tiles of ``tile`` cells covering ``n_cells`` (the last aligned to the end)."""
  if n_cells <= tile:
    return np.zeros(1, int)
  stride = max(1, tile - 2 * overlap)
  n = int(np.ceil((n_cells - tile) / stride)) + 1
  return np.minimum(np.arange(n) * stride, n_cells - tile)


def owned_ranges(n_cells: int, starts: np.ndarray, tile: int) -> list[tuple[int, int]]:
  """For each tile, the contiguous range of cells for which it is the most central tile."""
  centres = starts + tile / 2
  owner = np.argmin(np.abs(np.arange(n_cells)[None, :] + 0.5 - centres[:, None]), axis=0)
  ranges = []
  for i in range(len(starts)):
    idx = np.flatnonzero(owner == i)
    ranges.append((int(idx[0]), int(idx[-1]) + 1) if idx.size else (0, 0))
  return ranges
