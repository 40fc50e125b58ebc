"""Linking droplets through a sequence of frames, by their posteriors.

Each frame's table (``inference.catalog_table.droplet_table``: x, y, r with posterior
standard deviations, original px) is linked to the tracks alive before it by a global
assignment (``scipy.optimize.linear_sum_assignment``) whose cost is the squared
Mahalanobis distance between a track's prediction and a droplet:

    d² = (Δx² + Δy²) / (σ_x,track² + σ_x,droplet² + q_xy Δt) + (Δr)² / (σ_r,track² +
         σ_r,droplet² + σ_ṙ² Δt²)

where the prediction keeps the track's last position and grows its radius at the track's
own rate (the least-squares slope of its last radii; the population's median rate for a
track seen once). Nothing here is a pixel threshold: the posterior widths say how far a
droplet's reads may wander, and the two process terms are learned from the sequence
itself (``learn_motion``: mutual nearest neighbours of consecutive frames, robust
spreads). A pair is allowed when d² is under the ``gate`` quantile of χ² with 3 degrees of
freedom (x, y, r), and leaving a track or a droplet unmatched costs half of that, so the
assignment makes a match only when it is the better explanation.

Events, each labelled on the track table's rows (``event``) and listed in ``events``:

- ``birth``: a droplet no track explains starts a track (after the first frame, whose
  droplets were there before it);
- ``gap``: a track missed for up to ``max_gap`` frames and found again (the prediction's
  variance grows with the time since it was last seen);
- ``coalescence``: droplets that disappear where one droplet now covers them, with the
  new droplet's volume about the sum of theirs (hemispherical caps, V ∝ r³, within three
  standard deviations of the radii's posteriors and the growth in between), end there
  (``merged``), and the new droplet starts a new track whose ``parents`` are theirs. If
  the assignment had matched the new droplet to one parent (a small droplet swallowed by a
  large one barely moves it), that match is undone: the merged droplet is always a new
  track, so its growth rate is never fitted across the jump;
- ``death``: a track not seen for more than ``max_gap`` frames ends at its last row;
- tracks still alive in the last frame end without an event (censored).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree
from scipy.stats import chi2

COLUMNS = ("x", "y", "r", "x_sd", "y_sd", "r_sd")
FORBIDDEN = 1e12  # Cost of a pair outside the gate (never chosen over leaving both).


@dataclasses.dataclass(frozen=True)
class LinkOptions:
  """How droplets are linked (defaults suit any microscope; none is a pixel length)."""

  max_gap: int = 2  # Frames a track may be missed and still be continued.
  gate: float = 0.999  # Probability mass of the χ²(3) gate on d².
  merge_z: float = 3.0  # Volume conservation of a coalescence, in standard deviations.
  history: int = 5  # Last radii a track's growth rate is fitted on for its prediction.

  def __post_init__(self):
    if self.max_gap < 0:
      raise ValueError(f"max_gap must be >= 0, got {self.max_gap}")
    if not 0 < self.gate < 1:
      raise ValueError(f"gate must be in (0, 1), got {self.gate}")


@dataclasses.dataclass(frozen=True)
class Motion:
  """What the sequence says about how droplets move and grow between frames."""

  q_xy: float  # Position variance added per second (px²/s) beyond the posteriors'.
  rate: float  # Median growth rate dr/dt (px/s) of droplets seen in consecutive frames.
  rate_sd: float  # Spread of growth rates between droplets (px/s).
  pairs: int  # Mutual-nearest-neighbour pairs the numbers were learned from.


@dataclasses.dataclass
class Tracks:
  """Linked droplets: ``table`` has one row per (track, frame) with the frame table's
  columns, ``track``, ``frame``, ``time_s``, ``row`` (index in its frame's table) and
  ``event``; ``events`` lists births, coalescences (``parents``: track ids joined by ';'),
  gaps and deaths; ``motion`` what was learned."""

  table: pd.DataFrame
  events: pd.DataFrame
  motion: Motion


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
  if len(dr_dt) < 10:  # Too little to learn from: wide, uninformative motion.
    return Motion(q_xy=1.0, rate=0.0, rate_sd=1.0, pairs=len(dr_dt))
  dx, dr_dt = np.asarray(dx), np.asarray(dr_dt)
  q_xy = max(_mad_sd(dx) ** 2 - float(np.median(posterior_var)), 1e-3)
  return Motion(q_xy=q_xy, rate=float(np.median(dr_dt)), rate_sd=max(_mad_sd(dr_dt), 1e-3),
                pairs=len(dr_dt))


@dataclasses.dataclass
class _Track:
  id: int
  times: list  # Times (s) and rows (frame, row) of its detections.
  rows: list
  r: list
  last: np.ndarray  # x, y, r, x_sd, y_sd, r_sd of its last detection.
  rate: float | None = None  # Least-squares dr/dt of its last radii (None: seen once).
  rate_var: float = 0.0

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


def _assign(preds, det: np.ndarray, gate: float) -> dict[int, int]:
  """{detection: track index} of the cheapest assignment, where leaving a track or a
  droplet unmatched costs gate / 2 each and a pair costs its d² if under the gate. Only
  pairs within the gate are ever scored (a KD tree finds them), and each connected group
  of tracks and droplets they join is solved on its own: the same optimum as one
  assignment over everything, at a fraction of the cost."""
  from scipy.sparse import coo_matrix
  from scipy.sparse.csgraph import connected_components

  (x, y, r), (vp, vr) = (np.array(v).T for v in zip(*preds))
  det_var = 0.5 * (det[:, 3] ** 2 + det[:, 4] ** 2)
  reach = np.sqrt(gate * (vp + det_var.max()))  # No allowed pair is farther apart.
  near = cKDTree(det[:, :2]).query_ball_point(np.stack([x, y], 1), reach)
  ti = np.repeat(np.arange(len(near)), [len(v) for v in near])
  dj = np.concatenate([np.asarray(v, int) for v in near]) if len(ti) else np.zeros(0, int)
  d2 = ((det[dj, 0] - x[ti]) ** 2 + (det[dj, 1] - y[ti]) ** 2) / (vp[ti] + det_var[dj])
  d2 += (det[dj, 2] - r[ti]) ** 2 / (vr[ti] + det[dj, 5] ** 2)
  ok = d2 < gate
  ti, dj, d2 = ti[ok], dj[ok], d2[ok]
  n, m = len(x), len(det)
  if not len(ti):
    return {}
  graph = coo_matrix((np.ones(len(ti)), (ti, n + dj)), shape=(n + m, n + m))
  _, comp = connected_components(graph, directed=False)
  out = {}
  for c in np.unique(comp[ti]):
    sel = comp[ti] == c
    rows, rinv = np.unique(ti[sel], return_inverse=True)
    cols, cinv = np.unique(dj[sel], return_inverse=True)
    a, b = len(rows), len(cols)
    big = np.full((a + b, b + a), FORBIDDEN)
    big[rinv, cinv] = d2[sel]
    big[:a, b:] = np.where(np.eye(a, dtype=bool), gate / 2, FORBIDDEN)
    big[a:, :b] = np.where(np.eye(b, dtype=bool), gate / 2, FORBIDDEN)
    big[a:, b:] = 0.0
    for i, j in zip(*linear_sum_assignment(big)):
      if i < a and j < b and big[i, j] < FORBIDDEN:
        out[int(cols[j])] = int(rows[i])
  return out


def _volume_z(child, preds) -> float:
  """(V_child − Σ V_parents) / σ, V = r³ (the common factor of a cap cancels), σ from the
  radii's variances through dV = 3 r² dr."""
  r_c, var_c = child  # (r, variance of r) of the child and of each parent's prediction.
  v_p = sum(p[0] ** 3 for p in preds)
  var = (3 * r_c**2) ** 2 * var_c + sum((3 * p[0] ** 2) ** 2 * p[1] for p in preds)
  return (r_c**3 - v_p) / np.sqrt(max(var, 1e-12))


def link(tables: list[pd.DataFrame], times_s, options: LinkOptions = LinkOptions()) -> Tracks:
  """Tracks through ``tables`` (one droplet table per frame, in order) read at ``times_s``.

  Raises:
    ValueError: fewer than two frames, times not increasing, or a table without the
      posterior columns (x, y, r and their ``_sd``).
  """
  times_s = np.asarray(times_s, float)
  if len(tables) < 2:
    raise ValueError(f"a sequence needs at least 2 frames, got {len(tables)}")
  if len(times_s) != len(tables) or np.any(np.diff(times_s) <= 0):
    raise ValueError("frame times must be one per frame and increasing")
  for t, table in enumerate(tables):
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
      raise ValueError(f"frame {t}'s table lacks the column(s) {', '.join(missing)}")
  motion = learn_motion(tables, times_s)
  gate = float(chi2.ppf(options.gate, 3))
  active: list[_Track] = []
  done: list[_Track] = []
  events, labels = [], {}  # labels[(frame, row)] = event of that row.
  next_id = 0

  for f, table in enumerate(tables):
    t = times_s[f]
    det = table[list(COLUMNS)].to_numpy(float)
    assign = {}  # detection index -> track
    if active and len(det):
      preds = [tr.predict(t, motion) for tr in active]
      assign = {j: active[i] for j, i in _assign(preds, det, gate).items()}
    matched = {id(tr) for tr in assign.values()}
    # Coalescence: tracks seen in the previous frame and unmatched now, touching a
    # droplet of this frame whose volume their volumes (with its matched track's) explain.
    lost = [tr for tr in active if id(tr) not in matched and tr.rows[-1][0] == f - 1]
    children = {}
    for tr in lost:
      (x, y, r), (vp, vr) = tr.predict(t, motion)
      dist = np.hypot(det[:, 0] - x, det[:, 1] - y) if len(det) else np.zeros(0)
      touch = np.flatnonzero(dist < det[:, 2] + r + 3 * np.sqrt(vp + det[:, 3] ** 2)) \
          if len(det) else []
      if len(touch):  # The droplet it overlaps most (deepest inside it).
        j = int(touch[np.argmin(dist[touch] - det[touch, 2])])
        children.setdefault(j, []).append((tr, (r, vr)))
    merged, parents_of = set(), {}
    for j, cands in children.items():
      child = (det[j, 2], det[j, 5] ** 2)
      parents, preds = [], []
      if j in assign:  # Matched to one track: a merge only if its volume cannot explain it.
        (_, _, r), (_, vr) = assign[j].predict(t, motion)
        if _volume_z(child, [(r, vr)]) <= options.merge_z:
          continue
        parents.append(assign[j])
        preds.append((r, vr))
      for tr, pred in sorted(cands, key=lambda c: -c[1][0]):  # Largest first.
        z_with = _volume_z(child, preds + [pred])
        z_without = _volume_z(child, preds) if preds else np.inf
        if abs(z_with) <= options.merge_z or abs(z_with) < abs(z_without):
          parents.append(tr)
          preds.append(pred)
      if len(parents) >= 2 and abs(_volume_z(child, preds)) <= options.merge_z:
        assign.pop(j, None)
        merged.add(j)
        parents_of[j] = parents
        for p in parents:
          labels[p.rows[-1]] = "merged"
          active.remove(p)
          done.append(p)
    # Extend matched tracks; start new ones (births and coalescence children).
    for j in range(len(det)):
      if j in assign:
        tr = assign[j]
        if tr.rows[-1][0] < f - 1:
          labels[(f, j)] = "gap"
          events.append({"frame": f, "track": tr.id, "parents": "", "kind": "gap"})
      else:
        tr = _Track(next_id, [], [], [], det[j])
        next_id += 1
        active.append(tr)
        if j in merged:
          ids = ";".join(str(p.id) for p in parents_of[j])
          labels[(f, j)] = "coalescence"
          events.append({"frame": f, "track": tr.id, "parents": ids, "kind": "coalescence"})
        elif f > 0:  # Droplets of the first frame were there before it: no birth.
          labels[(f, j)] = "birth"
          events.append({"frame": f, "track": tr.id, "parents": "", "kind": "birth"})
      tr.add(t, (f, j), det[j], motion, options.history)
    # Deaths: tracks missed for more than max_gap frames.
    for tr in list(active):
      if f - tr.rows[-1][0] > options.max_gap:
        labels.setdefault(tr.rows[-1], "death")
        events.append({"frame": tr.rows[-1][0], "track": tr.id, "parents": "",
                       "kind": "death"})
        active.remove(tr)
        done.append(tr)
  return Tracks(table=_table(tables, times_s, done + active, labels),
                events=pd.DataFrame(events, columns=["frame", "track", "parents", "kind"]),
                motion=motion)


def _table(tables, times_s, tracks: list[_Track], labels: dict) -> pd.DataFrame:
  """One row per detection of every track, sorted by frame then track."""
  by_frame = {}
  for tr in tracks:
    for f, j in tr.rows:
      by_frame.setdefault(f, []).append((j, tr.id))
  parts = []
  for f in sorted(by_frame):
    rows, ids = (np.asarray(v) for v in zip(*by_frame[f]))
    part = tables[f].iloc[rows].reset_index(drop=True)
    part.insert(0, "row", rows)
    part.insert(0, "time_s", times_s[f])
    part.insert(0, "frame", f)
    part.insert(0, "track", ids)
    part["event"] = [labels.get((f, int(j)), "") for j in rows]
    parts.append(part)
  if not parts:
    return pd.DataFrame(columns=["track", "frame", "time_s", "row", *COLUMNS, "event"])
  return pd.concat(parts, ignore_index=True).sort_values(["frame", "track"],
                                                          ignore_index=True)
