"""The one reader: images read by the encoder through an image pyramid (``read``), in
tiles and batches (``Encoding``), and what is read from every level: candidates with
overlaps resolved (``merged_candidates``), the point catalog (``point_mask``) and the
render (``render_levels``). Inference, calibration, ``evaluate.py`` and the benchmarks all
read through it; no other module builds a pyramid or tiles an image
(tests/test_one_reader.py).

Droplets of every size in one image. The encoder reads droplets whose radius lies in the model's band [radius_min, radius_max]
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

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P
from scipy.spatial import cKDTree

from dropamort.config import ModelConfig
from dropamort.encoder.posterior import CatalogPosterior
from dropamort.parallel import AXIS, batch_mesh
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


def pad_to_cells(image_HWC: np.ndarray, cell: int, at_least: int = 0) -> np.ndarray:
  """Edge-pads an image to whole cells, and each side to at least ``at_least`` px."""
  h, w = image_HWC.shape[:2]
  ph, pw = max(-(-h // cell) * cell, at_least), max(-(-w // cell) * cell, at_least)
  return np.pad(image_HWC, [(0, ph - h), (0, pw - w), (0, 0)], mode="edge")


@dataclasses.dataclass(frozen=True)
class TilePlan:
  tile: int = 512  # Tile side in pixels (a multiple of the cell size).
  overlap: int = 8  # Context cells kept around each tile's owned region.
  batch: int = 4  # Tiles per encoder call.


def tile_starts(n_cells: int, tile: int, overlap: int) -> np.ndarray:
  """Start cells of tiles of ``tile`` cells covering ``n_cells`` (the last aligned to the end)."""
  if n_cells <= tile:
    return np.zeros(1, int)
  stride = max(1, tile - 2 * overlap)
  n = int(np.ceil((n_cells - tile) / stride)) + 1
  return np.minimum(np.arange(n) * stride, n_cells - tile)


def owned_ranges(n_cells: int, starts: np.ndarray, tile: int) -> list[tuple[int, int]]:
  """For each tile, the contiguous range of cells for which it is the most central tile:
  every cell is taken from the tile where it has the most context."""
  centres = starts + tile / 2
  owner = np.argmin(np.abs(np.arange(n_cells)[None, :] + 0.5 - centres[:, None]), axis=0)
  ranges = []
  for i in range(len(starts)):
    idx = np.flatnonzero(owner == i)
    ranges.append((int(idx[0]), int(idx[-1]) + 1) if idx.size else (0, 0))
  return ranges


_CELL_FIELDS = [f.name for f in dataclasses.fields(CatalogPosterior)]


class Encoding:
  """The encoder as the reader calls it: ``posteriors(params, images)``, one jitted
  function for every caller. Images whose padded shapes agree share calls of up to
  ``batch`` images; an image larger than a tile is cut into overlapping tiles (each cell
  taken from the tile where it is most central, so with at least ``plan.overlap`` cells of
  context), so memory is bounded by the tile size; with several devices each call's batch
  is split over them (a 1-D ``jax.sharding`` mesh; the caller places the parameters on
  every device, ``parallel.replicate(params, encoding.mesh)``).
  """

  def __init__(self, encoder, cell: int, plan: TilePlan = TilePlan(), devices=None):
    self.cell, self.plan = cell, plan
    devices = list(jax.local_devices() if devices is None else devices)
    self.mesh = batch_mesh(len(devices), devices) if len(devices) > 1 else None
    self._encode = jax.jit(lambda p, x: encoder.apply({"params": p}, x))

  @property
  def devices(self) -> int:
    return 1 if self.mesh is None else self.mesh.size

  def encode(self, params, batch_BHWC: np.ndarray) -> CatalogPosterior:
    """The encoder on a batch, split over the devices (padded to a multiple of their
    count with copies of the last image). The result is gathered onto the default device,
    where the rest of reading (tables, refinement) runs."""
    n = len(batch_BHWC)
    if self.mesh is None:
      return self._encode(params, jnp.asarray(batch_BHWC))
    extra = -n % self.mesh.size
    if extra:
      batch_BHWC = np.concatenate([batch_BHWC, np.repeat(batch_BHWC[-1:], extra, 0)])
    x = jax.device_put(batch_BHWC, NamedSharding(self.mesh, P(AXIS)))
    post = self._encode(params, x)
    return jax.tree.map(lambda a: jnp.asarray(np.asarray(a)[:n]), post)

  def pad(self, image_HWC: np.ndarray) -> np.ndarray:
    """Edge-pads to whole cells (and to at least one tile when tiling)."""
    c, t = self.cell, self.plan.tile
    h, w = image_HWC.shape[:2]
    tiled = -(-h // c) * c > t or -(-w // c) * c > t
    return pad_to_cells(image_HWC, c, t if tiled else 0)

  def posteriors(self, params, images: list[np.ndarray], batch: int = 8) -> list[CatalogPosterior]:
    """q(catalog | image) of each image on its padded cell grid (batches of one)."""
    padded = [self.pad(np.asarray(im, np.float32)) for im in images]
    out: list = [None] * len(images)
    groups: dict = {}
    for k, im in enumerate(padded):
      if max(im.shape[:2]) > self.plan.tile:
        out[k] = self._tiled(params, im)
      else:
        groups.setdefault(im.shape, []).append(k)
    for group in groups.values():
      for b in range(0, len(group), batch):
        ks = group[b:b + batch]
        post = self.encode(params, np.stack([padded[k] for k in ks]))
        for i, k in enumerate(ks):
          out[k] = jax.tree.map(lambda a, i=i: a[i:i + 1], post)
    return out

  def _tiled(self, params, padded: np.ndarray) -> CatalogPosterior:
    c, t = self.cell, self.plan.tile // self.cell
    gy, gx = padded.shape[0] // c, padded.shape[1] // c
    sy, sx = tile_starts(gy, t, self.plan.overlap), tile_starts(gx, t, self.plan.overlap)
    ry, rx = owned_ranges(gy, sy, t), owned_ranges(gx, sx, t)
    jobs = [(i, j) for i in range(len(sy)) for j in range(len(sx))]
    batch = -(-self.plan.batch // self.devices) * self.devices  # Whole tiles per device.
    out = None
    for b in range(0, len(jobs), batch):
      chunk = jobs[b:b + batch]
      tiles = np.stack([padded[sy[i] * c:(sy[i] + t) * c, sx[j] * c:(sx[j] + t) * c]
                        for i, j in chunk])
      if len(chunk) < batch:  # Keep one compiled shape.
        tiles = np.concatenate([tiles, np.repeat(tiles[-1:], batch - len(chunk), 0)])
      post = jax.tree.map(np.asarray, self.encode(params, tiles))
      if out is None:
        out = jax.tree.map(lambda a: np.zeros((1, gy, gx) + a.shape[3:], a.dtype), post)
      for k, (i, j) in enumerate(chunk):
        (y0, y1), (x0, x1) = ry[i], rx[j]
        src = (k, slice(y0 - sy[i], y1 - sy[i]), slice(x0 - sx[j], x1 - sx[j]))
        for name in _CELL_FIELDS:
          getattr(out, name)[0, y0:y1, x0:x1] = getattr(post, name)[src]
    return jax.tree.map(jnp.asarray, out)


def read(posteriors, images: list[np.ndarray], model: ModelConfig,
         max_levels: int | None = None) -> list[list["LevelResult"]]:
  """Every image read at every level of its pyramid (``plan_levels``, ``build_pyramid``):
  ``posteriors(level images) -> their posteriors`` is called once for all levels of all
  images (``Encoding.posteriors`` with the parameters bound, so levels of one shape
  share encoder calls)."""
  pyramids = []
  for image in images:
    levels = plan_levels(*image.shape[:2], model, max_levels)
    pyramids.append((levels, build_pyramid(image, len(levels))))
  posts = iter(posteriors([im for _, ims in pyramids for im in ims]))
  return [[LevelResult(lv, im, next(posts)) for lv, im in zip(levels, ims)]
          for levels, ims in pyramids]


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
  detection of its own level. Every conflicting pair is found at once (a k-d tree query
  of each candidate's disc, then ``conflict``'s rule on the arrays), so the greedy pass
  only walks each candidate's list of later conflicts."""
  n = len(cands["x"])
  keep, same = np.ones(n, bool), np.zeros(n, bool)
  if n == 0:
    return keep, same
  x, y, r = (np.asarray(cands[k], float) for k in ("x", "y", "r"))
  p, level = np.asarray(cands["p"]), np.asarray(cands["level"])
  order = _order(cands)
  rank = np.empty(n, int)
  rank[order] = np.arange(n)
  first, later = _conflicts(x, y, r, hard_core=hard_core)
  # Each pair once, as (earlier, later) in the order.
  swap = rank[first] > rank[later]
  first, later = np.where(swap, later, first), np.where(swap, first, later)
  by = np.argsort(rank[first], kind="stable")
  first, later = first[by], later[by]
  starts = np.searchsorted(rank[first], np.arange(n + 1))
  for k, i in enumerate(order):
    if not keep[i] or p[i] <= threshold:
      continue
    js = later[starts[k]:starts[k + 1]]
    js = js[keep[js]]
    keep[js], same[js] = False, level[js] == level[i]
  return keep, same


def _conflicts(x, y, r, *, hard_core: bool):
  """(i_M, j_M): every pair of candidates that ``conflict``, each once (i < j)."""
  tree = cKDTree(np.stack([x, y], 1))
  # d <= r_i (a hair more against rounding): every conflicting pair is in i's or j's list.
  near = tree.query_ball_point(np.stack([x, y], 1), r * (1 + 1e-9) + 1e-9)
  counts = np.fromiter((len(v) for v in near), int, len(near))
  i = np.repeat(np.arange(len(x)), counts)
  j = np.fromiter((k for v in near for k in v), int, int(counts.sum()))
  i, j = np.minimum(i, j), np.maximum(i, j)
  pairs = np.unique(np.stack([i, j], 1)[i != j], axis=0).reshape(-1, 2)
  i, j = pairs[:, 0], pairs[:, 1]
  d = np.hypot(x[i] - x[j], y[i] - y[j])
  big, small = np.maximum(r[i], r[j]), np.minimum(r[i], r[j])
  hit = (d <= 0.5 * big) & (small >= 0.5 * big)
  if hard_core:
    hit |= d < big
  return i[hit], j[hit]


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
