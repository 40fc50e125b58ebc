"""Simulated dropwise condensation with known truth: droplets nucleate, grow and coalesce
through a sequence of frames, then each frame is rendered by the generative model.

The physics is pure numpy (``np.random.default_rng``): it is the benchmark's truth, not a
model anything is fitted through. Droplets are pinned: a droplet's centre moves only when
it coalesces, and a coalesced droplet is a new track. Lengths in px; pixel (i, j) covers
[j, j+1) × [i, i+1), so centres are continuous coordinates.

Dimension letters: F frames, H/W pixel rows/columns, C channels, T composition types,
N droplets.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from dropamort.config import ModelConfig
from dropamort.model.catalog import from_table
from dropamort.model.decoder import bind
from dropamort.model.model import decoder_module
from dropamort.model.render import Layer, render_layers
from dropamort.sequence.growth import slope_weights


class Coalescence(NamedTuple):
  """Parents (alive at ``frame`` − 1) that became one new droplet ``track`` at ``frame``."""

  frame: int
  track: int
  parents: tuple[int, ...]


@dataclasses.dataclass
class Sequence:
  """A simulated sequence's truth.

  ``droplets`` lists every droplet alive in every frame, also those centred in the margin
  around the frame (they are rendered where they reach into it): columns track, frame,
  x, y, r, c0..c{T-1} (composition). ``truth`` is its catalogue: rows centred inside
  the frame. ``tracks``: per track its growth law (r0, g, t0, beta: R(t) = r0 +
  g·(t − t0)^beta, t in frames), its first and last frame and ``growth_rate``.
  """

  height: int
  width: int
  margin: int  # px simulated around the frame on each side.
  dt: float  # Seconds between frames.
  frames: int
  droplets: pd.DataFrame
  tracks: pd.DataFrame
  events: list[Coalescence]

  @property
  def truth(self) -> pd.DataFrame:
    """Catalogued droplets: track, frame, time_s, x, y, r (centre inside the frame)."""
    d = self.droplets
    inside = (d.x >= 0) & (d.x < self.width) & (d.y >= 0) & (d.y < self.height)
    t = d.loc[inside, ["track", "frame", "x", "y", "r"]].reset_index(drop=True)
    t.insert(2, "time_s", t["frame"] * self.dt)
    return t

  def events_table(self) -> pd.DataFrame:
    """The events as a table: frame, track (the child), parents (ids joined by ';')."""
    return pd.DataFrame({"frame": [e.frame for e in self.events],
                         "track": [e.track for e in self.events],
                         "parents": [";".join(map(str, e.parents)) for e in self.events]})


def lsq_slope(t, r) -> float:
  """Least-squares slope of r against t (NaN with fewer than two points)."""
  t, r = np.asarray(t, float), np.asarray(r, float)
  return float(slope_weights(t) @ r) if len(t) >= 2 else float("nan")


def growth_rates(truth: pd.DataFrame) -> pd.Series:
  """Each track's true growth rate (px/s): the least-squares slope dR/dt of its true radii
  over the frames where it is catalogued (NaN for a track catalogued once)."""
  t, r = truth["time_s"].astype(float), truth["r"].astype(float)
  by = truth["track"]
  tc = t - t.groupby(by).transform("mean")
  rc = r - r.groupby(by).transform("mean")
  num, den = (tc * rc).groupby(by).sum(), (tc * tc).groupby(by).sum()
  return (num / den.where(den > 0)).rename("growth_rate")


class _State:
  """The droplets alive now: arrays of centre, growth law and composition, with ids."""

  def __init__(self, types: int):
    self.track = np.zeros(0, int)
    self.x, self.y, self.g, self.t0 = (np.zeros(0) for _ in range(4))
    self.comp = np.zeros((0, types))

  def keep(self, m):
    for name in ("track", "x", "y", "g", "t0", "comp"):
      setattr(self, name, getattr(self, name)[m])

  def add(self, track, x, y, g, t0, comp):
    for name, v in zip(("track", "x", "y", "g", "t0", "comp"), (track, x, y, g, t0, comp)):
      setattr(self, name, np.concatenate([getattr(self, name), v]))


def _merge(s: _State, t: int, r_of, r0: float, beta: float, next_id, laws, events):
  """Merges touching droplets into one per connected cluster (volume-weighted centre,
  growth rate and composition, volume = sum, V ∝ R³), until none touch."""
  while len(s.track) > 1:
    r = r_of(s, t)
    d = np.hypot(s.x[:, None] - s.x[None, :], s.y[:, None] - s.y[None, :])
    touch = np.triu(d <= r[:, None] + r[None, :], k=1)
    if not touch.any():
      return next_id
    i, j = np.nonzero(touch)
    n = len(s.track)
    _, label = connected_components(coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n)),
                                    directed=False)
    sizes = np.bincount(label)
    v = r**3
    new = []
    for c in np.nonzero(sizes > 1)[0]:
      m = label == c
      w = v[m] / v[m].sum()
      g = float(w @ s.g[m])
      rm = float(np.cbrt(v[m].sum()))
      # The child goes on along its own law from its size now: a virtual birth time t0.
      t0 = t - ((rm - r0) / g) ** (1.0 / beta)
      new.append((next_id, w @ s.x[m], w @ s.y[m], g, t0, w @ s.comp[m]))
      # A parent that is itself a child of this frame passes on its own parents.
      parents = []
      for p in s.track[m]:
        parents += list(events.pop(p).parents) if p in events else [int(p)]
      events[next_id] = Coalescence(t, next_id, tuple(sorted(parents)))
      laws[next_id] = dict(g=g, t0=t0, born=t)
      next_id += 1
    s.keep(sizes[label] == 1)
    s.add(*(np.array([row[k] for row in new]) for k in range(6)))
  return next_id


def simulate_sequence(key_or_seed, *, frames: int = 50, height: int = 640, width: int = 960,
                      margin: int = 64, dt: float = 1.0, nucleation: float = 0.12,
                      growth: float = 0.45, growth_sd: float = 0.35, beta: float = 1.0,
                      r0: float = 3.0, types: int = 3) -> Sequence:
  """Simulates dropwise condensation on [−margin, width + margin) × [−margin, height +
  margin) px, frame by frame: grow, coalesce, nucleate, catalogue.

  Grow: R(t) = r0 + g·(t − t0)^beta (t in frames, t0 the birth frame), g log-normal per
  droplet (median ``growth`` px/frame^beta, log-sd ``growth_sd``). Coalesce: touching
  droplets (centre distance <= R1 + R2) become one new droplet at their volume-weighted
  centre, volume the sum (hemispherical caps, V ∝ R³), g and composition the
  volume-weighted means, t0 the virtual birth time at which its law gives its radius now
  (so it keeps growing from there); repeated until none touch, so one event may have more
  than two parents. Nucleate: Poisson(``nucleation`` per 100 × 100 px² of the domain)
  droplets of radius r0 at uniform positions, each rejected if its disc would come within
  1 px of another's; composition uniform in [0, 1]^types. The catalogue lists droplets
  centred inside the frame.

  Args:
    key_or_seed: an int seed or a JAX key (its key data seed numpy's generator).

  Returns:
    The ``Sequence``: every droplet of every frame, per-track laws and true growth rates
    (``growth_rates``: least-squares dR/dt over the track's catalogued frames, px/s with
    frame interval ``dt``), and the coalescence events.
  """
  seed = key_or_seed
  if not isinstance(seed, (int, np.integer)):
    seed = np.asarray(jax.random.key_data(seed)).ravel()
  rng = np.random.default_rng(seed)
  lo, hi = -margin, (width + margin, height + margin)
  area = (hi[0] - lo) * (hi[1] - lo)
  r_of = lambda s, t: r0 + s.g * np.maximum(t - s.t0, 0.0) ** beta
  s, laws, rows, events, next_id = _State(types), {}, [], {}, 0
  for t in range(frames):
    frame_events: dict[int, Coalescence] = {}
    next_id = _merge(s, t, r_of, r0, beta, next_id, laws, frame_events)
    events.update(frame_events)
    for _ in range(rng.poisson(nucleation * area / 1e4)):
      x, y = rng.uniform(lo, hi[0]), rng.uniform(lo, hi[1])
      g = growth * math.exp(growth_sd * rng.standard_normal())
      comp = rng.uniform(size=(1, types))
      if len(s.track) and np.any(np.hypot(s.x - x, s.y - y) < r0 + r_of(s, t) + 1.0):
        continue
      s.add(np.array([next_id]), np.array([x]), np.array([y]), np.array([g]),
            np.array([float(t)]), comp)
      laws[next_id] = dict(g=g, t0=float(t), born=t)
      next_id += 1
    r = r_of(s, t)
    rows.append(pd.DataFrame({"track": s.track, "frame": t, "x": s.x, "y": s.y, "r": r,
                              **{f"c{k}": s.comp[:, k] for k in range(types)}}))
  droplets = pd.concat(rows, ignore_index=True)
  seq = Sequence(height=height, width=width, margin=margin, dt=dt, frames=frames,
                 droplets=droplets, tracks=pd.DataFrame(), events=[])
  seq.events = [events[k] for k in sorted(events)]
  seq.tracks = _track_table(seq, laws, r0, beta)
  return seq


def _track_table(seq: Sequence, laws: dict, r0: float, beta: float) -> pd.DataFrame:
  d = seq.droplets.groupby("track")["frame"]
  rate = growth_rates(seq.truth)
  ids = np.unique(seq.droplets["track"])  # Not the children merged again in their frame.
  return pd.DataFrame({"track": ids, "r0": r0, "beta": beta,
                       "g": [laws[i]["g"] for i in ids], "t0": [laws[i]["t0"] for i in ids],
                       "first": d.min().reindex(ids).to_numpy(),
                       "last": d.max().reindex(ids).to_numpy(),
                       "growth_rate": rate.reindex(ids).to_numpy(float)})


# --- rendering -------------------------------------------------------------------------

def _layer_specs(cfg: ModelConfig) -> list[tuple[int, int, float, float, float]]:
  """(cell, reach_cells, r_scale, lo, hi] of the band and each larger layer, as
  ``model.scene_layers`` builds them."""
  specs = [(cfg.cell, cfg.reach_cells, 1.0, 0.0, cfg.radius_max)]
  for j in range(1, cfg.larger_layers + 1):
    cell, lo, hi = cfg.larger(j)
    specs.append((cell, int(math.ceil(cfg.reach * hi / cell)), cfg.larger_scale(j), lo, hi))
  return specs


def _split(frame: pd.DataFrame, specs, offset: float) -> list[list[pd.DataFrame]]:
  """A frame's droplets by layer (radius band), each layer split into sub-layers with at
  most one droplet per cell (``from_table`` allows no more)."""
  out = []
  for cell, _, _, lo, hi in specs:
    d = frame[(frame.r > lo) & (frame.r <= hi)]
    flat = (np.floor((d.y + offset) / cell) * 1e6 + np.floor((d.x + offset) / cell)).to_numpy()
    rank = pd.Series(flat).groupby(flat).cumcount().to_numpy()
    out.append([d[rank == k] for k in range(rank.max() + 1 if len(d) else 0)])
  return out


@functools.lru_cache(maxsize=4)
def _renderer(cfg_items: tuple, specs: tuple, origin: int):
  """One jitted frame renderer: (decoder params, per layer a tuple of sub-layer catalogs,
  noise sigma, key) -> image_HWC with Normal noise, clipped to [0, 1]; it compiles once
  per count of sub-layers."""
  cfg = ModelConfig(**dict(cfg_items))
  module = decoder_module(cfg)

  def render(params, catalogs, noise_sigma, key):
    layers = []
    for (cell, k, r_scale, _, _), cats in zip(specs, catalogs):
      layers += [Layer(c, cell, k, r_scale) for c in cats]
    image = render_layers(bind(module, params), layers, height=cfg.height, width=cfg.width,
                          reach=cfg.reach, origin=origin)[0]
    noise = noise_sigma * jax.random.normal(key, image.shape)
    return jnp.clip(image + noise, 0.0, 1.0)

  return jax.jit(render)


def _catalog(d: pd.DataFrame, comp_cols, shift: float, background, grid, cell: int):
  """One sub-layer's droplets (at most one per cell) as a Catalog on the margin's grid; an
  empty sub-layer is a catalog with every cell off."""
  table = {"x": d.x.to_numpy() + shift, "y": d.y.to_numpy() + shift, "r": d.r.to_numpy(),
           "composition": d[comp_cols].to_numpy()}
  if len(d):
    return from_table(table, background, grid, cell)
  one = {"x": [0.5], "y": [0.5], "r": [1.0], "composition": np.zeros((1, len(comp_cols)))}
  cat = from_table(one, background, grid, cell)
  return cat.replace(on_BYX=jnp.zeros_like(cat.on_BYX))


def render_frames(seq: Sequence, model_cfg: ModelConfig, decoder_params, *,
                  noise_sigma: float, seed: int = 0, background=None) -> np.ndarray:
  """Every frame of ``seq`` rendered by the generative model's renderer, with Normal pixel
  noise: each droplet in the layer of its radius (``model.scene_layers``' cells, reach
  and r_scale), droplets that share a cell in extra layers of that cell (the renderer
  takes the nearest droplet over all layers), droplets centred in the margin drawn where
  they reach into the frame. One compiled renderer for all frames, a frame at a time.

  Args:
    model_cfg: the reading model's config; its height and width are replaced by the
      sequence's.
    background: one constant value per channel (decoder units, pre-sigmoid), None: the
      midpoint of the config's background range.
    seed: the noise of frame f is drawn from ``fold_in(key(seed), f)``.

  Returns:
    images_FHWC, float32 in [0, 1].
  """
  m = seq.margin
  cfg = dataclasses.replace(model_cfg, height=seq.height, width=seq.width)
  specs = _layer_specs(cfg)
  if np.max(seq.droplets.r.to_numpy(), initial=0.0) > specs[-1][4]:
    raise ValueError(f"a droplet is larger than the largest layer's {specs[-1][4]} px")
  if any(m % s[0] for s in specs):
    raise ValueError(f"margin {m} px is not a whole number of every layer's cell")
  if background is None:
    background = (np.asarray(cfg.background_low) + np.asarray(cfg.background_high)) / 2
  background = np.broadcast_to(np.asarray(background, np.float32), (cfg.channels,))
  comp_cols = [f"c{k}" for k in range(cfg.types)]
  by_frame = [seq.droplets[seq.droplets.frame == f] for f in range(seq.frames)]
  splits = [_split(d, specs, m) for d in by_frame]
  counts = [max(1, *(len(sp[j]) for sp in splits)) for j in range(len(specs))]
  items = tuple((f.name, getattr(cfg, f.name)) for f in dataclasses.fields(cfg))
  render = _renderer(items, tuple(specs), m)
  key = jax.random.key(seed)
  images = np.zeros((seq.frames, seq.height, seq.width, cfg.channels), np.float32)
  for f, split in enumerate(splits):
    catalogs = []
    for (cell, *_), n, subs in zip(specs, counts, split):
      grid = (-(-(seq.height + 2 * m) // cell), -(-(seq.width + 2 * m) // cell))
      subs = subs + [by_frame[f].iloc[:0]] * (n - len(subs))
      catalogs.append(tuple(_catalog(d, comp_cols, m, background, grid, cell) for d in subs))
    images[f] = np.asarray(render(decoder_params, tuple(catalogs), noise_sigma,
                                  jax.random.fold_in(key, f)))
  return images
