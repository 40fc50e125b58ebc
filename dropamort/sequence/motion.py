"""How droplets move and grow between frames: learned from a sequence, and the state a
track predicts its next read from (``sequence.link``)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree


@dataclasses.dataclass(frozen=True)
class Motion:
  """What the sequence says about how droplets move and grow between frames."""

  q_xy: float  # Position variance added per second (px²/s) beyond the posteriors'.
  rate: float  # Median growth rate dr/dt (px/s) of droplets seen in consecutive frames.
  rate_sd: float  # Spread of growth rates between droplets (px/s).
  pairs: int  # Mutual-nearest-neighbour pairs the numbers were learned from.


def _mad_sd(v: np.ndarray) -> float:
  return float(1.4826 * np.median(np.abs(v - np.median(v)))) if len(v) else 0.0


def learn_motion(tables: list[pd.DataFrame], times_s: np.ndarray) -> Motion:
  """Position noise and growth rates from droplets that are each other's nearest
  neighbour in consecutive frames, closer than half the smaller radius and within half a
  radius in size: pairs no reasonable linker would doubt. Robust (median absolute
  deviation) spreads, so the few wrong pairs do not widen them."""
  dx, dr_dt, posterior_var = [], [], []
  for t in range(1, len(tables)):
    a, b = tables[t - 1], tables[t]
    if not len(a) or not len(b):
      continue
    pa, pb = a[["x", "y"]].to_numpy(), b[["x", "y"]].to_numpy()
    da, ia = cKDTree(pb).query(pa)
    _, ib = cKDTree(pa).query(pb)
    mutual = ib[ia] == np.arange(len(a))
    ra, rb = a["r"].to_numpy(), b["r"].to_numpy()[ia]
    ok = mutual & (da < 0.5 * np.minimum(ra, rb)) & (np.abs(rb - ra) < 0.5 * ra)
    dt = float(times_s[t] - times_s[t - 1])
    j = ia[ok]
    dx += list((pb[j] - pa[ok]).ravel() / np.sqrt(dt))
    posterior_var += list(np.repeat((a["x_sd"].to_numpy()[ok] ** 2
                                     + b["x_sd"].to_numpy()[j] ** 2) / dt, 2))
    dr_dt += list((rb[ok] - ra[ok]) / dt)
  if len(dr_dt) < 10:  # Too little to learn from: wide, uninformative motion, in the
    # sequence's own units: a droplet may move or grow by its own radius in a frame.
    radii = np.concatenate([t["r"].to_numpy() for t in tables])
    step = float(np.median(np.diff(times_s))) if len(times_s) > 1 else 1.0
    r = float(np.median(radii)) if len(radii) else 1.0
    return Motion(q_xy=r**2 / step, rate=0.0, rate_sd=r / step, pairs=len(dr_dt))
  dx, dr_dt = np.asarray(dx), np.asarray(dr_dt)
  q_xy = max(_mad_sd(dx) ** 2 - float(np.median(posterior_var)), 1e-3)
  return Motion(q_xy=q_xy, rate=float(np.median(dr_dt)), rate_sd=max(_mad_sd(dr_dt), 1e-3),
                pairs=len(dr_dt))


@dataclasses.dataclass(eq=False)  # Identity: two tracks are never equal.
class Track:
  id: int
  times: list  # Times (s) and rows (frame, row) of its detections.
  rows: list
  r: list
  last: np.ndarray  # x, y, r, x_sd, y_sd, r_sd of its last detection.
  rate: float | None = None  # Least-squares dr/dt of its last radii (None: seen once).
  rate_var: float = 0.0
  absorbed: tuple | None = None  # (frame, track) of the droplet it touched when lost.

  def add(self, t: float, row, detection: np.ndarray, motion: Motion, history: int):
    """Appends a detection and refits the growth rate its predictions use."""
    self.times.append(t)
    self.rows.append(row)
    self.r.append(detection[2])
    self.last = detection
    if len(self.r) >= 2:
      ts, rs = np.asarray(self.times[-history:]), np.asarray(self.r[-history:])
      d = ts - ts.mean()
      self.rate = float(d @ rs / (d @ d))
      self.rate_var = motion.rate_sd**2 / len(rs)  # The fitted slope's own uncertainty.

  def predict(self, t: float, motion: Motion):
    """(x, y, r) predicted at ``t`` and the variances (position, radius) of the
    prediction alone."""
    rate, rate_var = ((motion.rate, motion.rate_sd**2) if self.rate is None
                      else (self.rate, self.rate_var))
    dt = t - self.times[-1]
    x, y, r, sx, sy, sr = self.last
    return (x, y, r + rate * dt), (0.5 * (sx**2 + sy**2) + motion.q_xy * dt,
                                   sr**2 + rate_var * dt**2)
