"""Droplets of every size in one image: the encoder on an image pyramid.

The encoder reads droplets whose radius lies in the model's band [radius_min, radius_max]
(1–8 px by default) and was trained with larger droplets around that it must not
catalogue. An image pyramid (each level half the size of the one below, by 2 × 2
averaging, so level k's pixel (i, j) is exactly base pixels [2^k i, 2^k (i+1)) ×
[2^k j, 2^k (j+1))) brings every size into the band at some level; there are levels
until the largest droplet the image can hold (its diameter the shorter side) is in the
band. Each level keeps the droplets whose radius (in its own pixels) falls in its *keep
band*: level 0 the whole band, coarser levels its upper octave [radius_max / 2,
radius_max) and a margin below it, down to ``KEEP_MARGIN`` × radius_max / 2. Without the
margin the bands would tile the radius axis exactly (1–8, 8–16, 16–32, ... px of the
base image), and a droplet just above radius_max at one level would be lost at both: at
the band's top the encoder can hardly tell it from the larger droplets it was trained to
ignore, and one level up it sits just below that level's band. A read in the margin
*yields* to the next finer level's reads of the same droplet (that level sees it with
twice the pixels), see ``resolve``.

Where two detections are the same droplet (two levels, or two neighbouring cells of one
level, read it), or (for droplets that do not overlap, the hard-core model) one is
centred inside another, the coarser (a margin read ranks just below the next finer
level), then the more probable, confident detection wins (``resolve``). Between levels the
loser is dropped. Within a level it is only marked ``duplicate``: the encoder's cells are
independent given the image, so it cannot say "this cell or its neighbour" and on real
images often says both; the point catalog (``point_mask``: tables, reconstructions) leaves
duplicates out, while posterior draws (counts, areas, size distributions) keep every cell's
probability, whose sum is what the encoder calibrates on simulations.
"""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp
import numpy as np
from scipy.spatial import cKDTree

from dropamort.config import ModelConfig
from dropamort.encoder.posterior import CatalogPosterior
from dropamort.model.reconstruct import decoder_inputs, reconstruct
from dropamort.schema import LEVEL

# A coarser level also keeps reads down to this fraction of its band's lower octave.
# Measured on the wide simulated set (380x507_wide, the simulation-trained model, 6
# levels), F1 of the worst radius octave: 0.80 without a margin (1.0), 0.86 at 0.9, 0.90
# at 0.8, 0.92 at 0.7, 0.93 at 0.6 (but at 0.6 and below the coarse levels' small reads
# start to cost precision: 0.5 gives 0.88); on the real condensation set F1 moves by
# -0.003 at 0.7 (recall 0.877 -> 0.909, precision 0.599 -> 0.582).
KEEP_MARGIN = 0.7


@dataclasses.dataclass(frozen=True)
class Level:
  index: int  # 0 is the base (analysed) image; level k is 2^-k of it.
  keep: tuple[float, float]  # Radius band kept at this level, in its own pixels.
  handoff: float = 0.0  # Reads below this radius (own pixels) yield to the finer level.

  @property
  def factor(self) -> int:
    """Base pixels per level pixel."""
    return 2**self.index


def plan_levels(height: int, width: int, model: ModelConfig, max_levels: int | None = None):
  """The levels for a base image of height × width: coarser ones while the coarsest's
  shorter side exceeds 2 radius_max (so a droplet as wide as the image is in the band
  somewhere) and is at least one cell; at most ``max_levels``."""
  top, side = model.radius_max, min(height, width)
  n = 1
  while side / 2 ** (n - 1) > 2 * top and side / 2**n >= model.cell:
    n += 1
  if max_levels is not None:
    n = min(n, max_levels)
  # The finest level keeps everything below its band's top, the coarsest everything
  # above its bottom: nothing finer or coarser would read them.
  lo = lambda k: 0.0 if k == 0 else KEEP_MARGIN * top / 2
  hi = lambda k: math.inf if k == n - 1 else top
  return [Level(k, (lo(k), hi(k)), 0.0 if k == 0 else top / 2) for k in range(n)]


def build_pyramid(image_HWC: np.ndarray, n: int) -> list[np.ndarray]:
  """The base image and n - 1 halvings (2 × 2 means; an odd side repeats its edge)."""
  out = [np.asarray(image_HWC, np.float32)]
  for _ in range(n - 1):
    im = out[-1]
    h, w = im.shape[:2]
    im = np.pad(im, [(0, h % 2), (0, w % 2), (0, 0)], mode="edge")
    out.append(im.reshape(im.shape[0] // 2, 2, im.shape[1] // 2, 2, -1).mean((1, 3)))
  return out


def level_candidates(table: dict, level: Level, height: int, width: int) -> dict:
  """The rows of one level's table (level pixels) that the level keeps: centred inside
  its image and with median radius in its keep band; moved to base pixels (lengths ×
  2^k) and marked with the level."""
  r = np.asarray(table["r"])
  lo, hi = level.keep
  keep = (np.asarray(table["x"]) < width) & (np.asarray(table["y"]) < height) & (r >= lo) & (
      r < hi)
  f = level.factor
  out = {}
  for k, v in table.items():
    v = np.asarray(v)[keep]
    if k == "r_log_loc":
      v = v + math.log(f)
    elif k.startswith(("x", "y", "r")) and not k.startswith("r_log_scale"):
      v = v * f
    out[k] = v
  out["level"] = np.full(int(keep.sum()), level.index)
  out["yields"] = r[keep] < level.handoff
  return out


def merge(tables: list[dict]) -> dict:
  """Row-wise concatenation of tables with the same columns."""
  return {k: np.concatenate([np.asarray(t[k]) for t in tables]) for k in tables[0]}


def rank_level(cands: dict) -> np.ndarray:
  """The level a candidate ranks at: its own, or for a read in a level's margin
  (``yields``) just below the next finer level."""
  level = np.asarray(cands["level"], float)
  return level - 1.5 * np.asarray(cands.get("yields", np.zeros(level.shape, bool)))


def _order(cands: dict) -> np.ndarray:
  """Coarser (``rank_level``) first, then higher p."""
  return np.lexsort((-np.asarray(cands["p"]), -rank_level(cands)))


def conflict(xi, yi, ri, xj, yj, rj, *, hard_core: bool) -> bool:
  """Two detections are one droplet (centres within half the larger radius, radii within
  a factor 2: the matching rule), or, for droplets that do not overlap, the smaller is
  centred inside the larger."""
  d = math.hypot(xi - xj, yi - yj)
  big, small = max(ri, rj), min(ri, rj)
  return (d <= 0.5 * big and small >= 0.5 * big) or (hard_core and d < big)


def resolve(cands: dict, *, threshold: float, hard_core: bool) -> np.ndarray:
  """Which candidates survive: in order (coarse levels first, a margin read just below
  the next finer level, ``rank_level``; then higher p), every
  confident survivor (p > threshold) removes the later candidates, of any level, that
  conflict with it (``conflict``).

  Returns:
    keep_N, boolean.
  """
  return _resolve(cands, threshold=threshold, hard_core=hard_core)[0]


def _resolve(cands: dict, *, threshold: float, hard_core: bool):
  """(keep_N, same_level_N): ``resolve``'s survivors, and whether each loser lost to a
  detection of its own level."""
  n = len(cands["x"])
  keep, same = np.ones(n, bool), np.zeros(n, bool)
  if n == 0:
    return keep, same
  x, y, r = (np.asarray(cands[k], float) for k in ("x", "y", "r"))
  p, level = np.asarray(cands["p"]), np.asarray(cands["level"])
  order = _order(cands)
  rank = np.empty(n, int)
  rank[order] = np.arange(n)
  tree = cKDTree(np.stack([x, y], 1))
  r_max = r.max()
  for i in order:
    if not keep[i] or p[i] <= threshold:
      continue
    for j in tree.query_ball_point((x[i], y[i]), max(r[i], r_max)):
      if rank[j] > rank[i] and keep[j] and conflict(
          x[i], y[i], r[i], x[j], y[j], r[j], hard_core=hard_core):
        keep[j], same[j] = False, level[j] == level[i]
  return keep, same


MIN_P = 0.01  # Candidates below this probability add less than it each: left out.


@dataclasses.dataclass
class LevelResult:
  """One pyramid level: its image and the encoder's posterior on its cell grid."""

  level: Level
  image: np.ndarray
  posterior: CatalogPosterior


def merged_candidates(levels: list[LevelResult], model: ModelConfig, threshold: float,
                      level: float = LEVEL, widen=None) -> dict:
  """Every level's kept candidates (p >= MIN_P) in base pixels, overlaps between levels
  resolved (``resolve``); intervals at ``level``, the posterior's scales of x, y and
  log r times ``widen`` (``Prior.widen``) when given."""
  tables = []
  for lr in levels:
    h, w = lr.image.shape[:2]
    post = lr.posterior if widen is None else lr.posterior.widened(widen)
    table = post.to_table(model.cell, MIN_P, level=level)[0]
    tables.append(level_candidates(table, lr.level, h, w))
  cands = merge(tables)
  keep, same = _resolve(cands, threshold=threshold, hard_core=model.hard_core)
  cands["duplicate"] = same
  return {k: v[keep | same] for k, v in cands.items()}


def point_mask(cands: dict, threshold: float) -> np.ndarray:
  """The rows of the point catalog: p > threshold and not a duplicate within a level."""
  sure = np.asarray(cands["p"]) > threshold
  return sure & ~np.asarray(cands.get("duplicate", np.zeros(sure.shape, bool)))


def kept_catalogs(levels: list[LevelResult], candidates: dict, threshold: float):
  """(factor, point catalog) per level holding only its kept droplets (p > threshold)."""
  out = []
  for lr in levels:
    cat = lr.posterior.point(threshold)
    mine = (candidates["level"] == lr.level.index) & point_mask(candidates, threshold)
    on = np.zeros(cat.on_BYX.shape[1:], bool)
    on[candidates["cell_row"][mine], candidates["cell_col"][mine]] = True
    out.append((lr.level.factor, cat.replace(on_BYX=jnp.asarray(on[None]))))
  return out


def render_levels(model: ModelConfig, decoder_params, levels: list[LevelResult],
                  candidates: dict, threshold: float) -> np.ndarray:
  """Noise-free render of the kept droplets (p > threshold) of every level at the base
  image's size, each level's droplets at their size."""
  cats = kept_catalogs(levels, candidates, threshold)
  h, w = levels[0].image.shape[:2]
  return reconstruct(model, decoder_params, cats[0][1], height=h, width=w,
                     coarser=tuple(cats[1:]))


def level_inputs(model: ModelConfig, levels: list[LevelResult], candidates: dict,
                 threshold: float) -> np.ndarray:
  """What the decoder is asked at every pixel of ``render_levels``' render, packed
  (``reconstruct.pack``): (H, W, C + 4 + T) at the base image's size."""
  cats = kept_catalogs(levels, candidates, threshold)
  h, w = levels[0].image.shape[:2]
  return decoder_inputs(model, cats[0][1], height=h, width=w, coarser=tuple(cats[1:]))
