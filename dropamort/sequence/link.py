"""Linking droplets through a sequence of frames, by their posteriors.

Each frame's table (``inference.catalog_table.droplet_table``: x, y, r with posterior
standard deviations, original px) is linked to the tracks alive before it by a global
assignment (``scipy.optimize.linear_sum_assignment``) whose cost is the squared
Mahalanobis distance between a track's prediction and a droplet:

    d² = (Δx² + Δy²) / (σ_x,track² + σ_x,droplet² + q_xy Δt) + (Δr)² / (σ_r,track² +
         σ_r,droplet² + σ_ṙ² Δt²)

The prediction keeps the track's last position and grows its radius at the track's own
rate (the least-squares slope of its last radii; the population's median rate for a
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
  (``merged``), and the new droplet starts a new track whose ``parents`` are theirs. When
  the assignment matched the new droplet to one parent (a large droplet swallowing a small
  one barely moves), this is a merge only if that parent's volume alone falls three
  standard deviations short. A smaller absorption is decided later: a droplet lost beside
  another one that does not come back within ``max_gap`` frames was absorbed by it (a
  neighbour merely missed in a frame comes back, and keeps its track). If the absorbing
  droplet's read volume grew by more than half the absorbed one's (the likelier of "it
  added its volume" and "it added nothing") and the absorbed droplet was read in more
  than one frame, the absorbing track is split there, so that the merged droplet is a
  new track as for every coalescence; if not (a spurious read beside a large droplet,
  often read once, adds nothing), the event is labelled and the track goes on;
- ``death``: a track not seen for more than ``max_gap`` frames ends at its last row;
- tracks still alive in the last frame end without an event (censored).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree
from scipy.stats import chi2

from dropamort.sequence.motion import Motion, Track, learn_motion  # noqa: F401 (API)

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


@dataclasses.dataclass
class Tracks:
  """Linked droplets: ``table`` has one row per (track, frame) with the frame table's
  columns, ``track``, ``frame``, ``time_s``, ``row`` (index in its frame's table) and
  ``event``; ``events`` lists births, coalescences (``parents``: track ids joined by ';'),
  gaps and deaths; ``motion`` what was learned."""

  table: pd.DataFrame
  events: pd.DataFrame
  motion: Motion


def _assign(preds, det: np.ndarray, gate: float) -> dict[int, int]:
  """{detection: track index} of the cheapest assignment, where leaving a track or a
  droplet unmatched costs gate / 2 each and a pair costs its d² if under the gate. Only
  pairs within the gate are ever scored (a KD tree finds them), and each connected group
  of tracks and droplets they join is solved on its own: the same optimum as one
  assignment over everything, at a fraction of the cost."""
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
    ValueError: fewer than two frames, times not finite and increasing, or a table
      without finite posterior columns (x, y, r and their ``_sd``).
  """
  times_s = np.asarray(times_s, float)
  if len(tables) < 2:
    raise ValueError(f"a sequence needs at least 2 frames, got {len(tables)}")
  if len(times_s) != len(tables) or np.any(np.diff(times_s) <= 0):
    raise ValueError("frame times must be one per frame and increasing")
  if not np.all(np.isfinite(times_s)):
    raise ValueError("frame times must be finite numbers")
  for t, table in enumerate(tables):
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
      raise ValueError(f"frame {t}'s table lacks the column(s) {', '.join(missing)}")
    if not np.all(np.isfinite(table[list(COLUMNS)].to_numpy(float))):
      raise ValueError(f"frame {t}'s table has non-finite positions, radii or widths")
  motion = learn_motion(tables, times_s)
  gate = float(chi2.ppf(options.gate, 3))
  active: list[Track] = []
  done: list[Track] = []
  events, labels = [], {}  # labels[(frame, row)] = event of that row.
  absorbed = {}  # (frame, child id) -> (child track, tracks it absorbed, each seen?).
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
    merged, parents_of, pending = set(), {}, {}
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
    for j, cands in children.items():  # Touched but not merged: maybe absorbed (below).
      if j not in merged and j not in pending:
        r_own = assign[j].predict(t, motion)[0][2] if j in assign else 0.0
        pending[j] = (det[j, 2] ** 3 - r_own**3, cands)
    # Extend matched tracks; start new ones (births and coalescence children).
    owner = {}
    for j in range(len(det)):
      if j in assign:
        tr = assign[j]
        if tr.rows[-1][0] < f - 1:
          labels[(f, j)] = "gap"
          events.append({"frame": f, "track": tr.id, "parents": "", "kind": "gap"})
      else:
        tr = Track(next_id, [], [], [], det[j])
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
      tr.absorbed = None  # Found (again): whatever it touched when lost, it was not absorbed.
      owner[j] = tr
    for j, (excess, cands) in pending.items():  # Absorbed, unless it comes back.
      for tr, (r, _) in sorted(cands, key=lambda c: -c[1][0]):
        if tr in active and tr.absorbed is None:
          # Seen in the volume if the child's volume beyond its own track's prediction is
          # nearer r³ than 0 (the likelier of "it added its volume" and "it added
          # nothing") and the droplet was read more than once; only then is the child's
          # track split (a spurious read beside a large droplet, often read once, adds
          # nothing and must not cut the large droplet's track).
          tr.absorbed = (f, owner[j], excess >= r**3 / 2 and len(tr.rows) >= 2)
          excess -= r**3
    # Ends: tracks missed for more than max_gap frames (and, at the last frame, every track
    # still missing): absorbed by the droplet they touched when lost, or dead.
    for tr in list(active):
      gone = f - tr.rows[-1][0]
      if gone > options.max_gap or (f == len(tables) - 1 and gone > 0 and tr.absorbed):
        _end(tr, labels, events, absorbed)
        active.remove(tr)
        done.append(tr)
  done += _absorptions(absorbed, events, labels, next_id)
  return Tracks(table=_table(tables, times_s, done + active, labels),
                events=pd.DataFrame(events, columns=["frame", "track", "parents", "kind"]),
                motion=motion)


def _end(tr: Track, labels: dict, events: list, absorbed: dict) -> None:
  """Ends a track that is not coming back: merged into the droplet it touched when it was
  lost, if any (collected in ``absorbed`` by that droplet's (frame, track)), else dead."""
  if tr.absorbed is not None:
    f, child, seen = tr.absorbed
    labels[tr.rows[-1]] = "merged"
    absorbed.setdefault((f, child.id), (child, [], []))[1].append(tr)
    absorbed[(f, child.id)][2].append(seen)
  else:
    labels.setdefault(tr.rows[-1], "death")
    events.append({"frame": tr.rows[-1][0], "track": tr.id, "parents": "", "kind": "death"})


def _last_part(tr: Track, successor: dict) -> Track:
  """The part of a track that holds its last row, after any splits."""
  while tr in successor:
    tr = successor[tr]
  return tr


def _absorptions(absorbed: dict, events: list, labels: dict, next_id: int) -> list[Track]:
  """Coalescence events of the droplets absorbed without a measurable change of volume (a
  small droplet swallowed by a large one). The absorbed join the parents of the child's
  coalescence event if it has one. Else, if the child's track existed before, it is split
  there: the part from the absorption on becomes a new track, so that, as for every
  coalescence, the merged droplet is a new track whose parents are the old part and the
  absorbed. ``events`` and ``labels`` are updated in place; returns the new tracks."""
  created, successor = [], {}
  for (f, _), (child, gone, seen) in sorted(absorbed.items(), key=lambda kv: kv[0]):
    while not any(r[0] == f for r in child.rows):  # Split earlier: follow the later part.
      child = successor[child]
    gone = [_last_part(tr, successor) for tr in gone]  # Split earlier: their later parts.
    ids = [str(tr.id) for tr in gone]
    event = next((e for e in events if e["kind"] == "coalescence" and e["frame"] == f
                  and e["track"] == child.id), None)
    if event is not None:
      event["parents"] = ";".join([event["parents"], *ids])
      continue
    if child.rows[0][0] == f and len(gone) >= 2:  # Droplets lost where a new one is:
      labels[child.rows[0]] = "coalescence"  # its birth was their coalescence.
      events[:] = [e for e in events if not (e["kind"] == "birth" and e["frame"] == f
                                             and e["track"] == child.id)]
      events.append({"frame": f, "track": child.id, "parents": ";".join(ids),
                     "kind": "coalescence"})
      continue
    if child.rows[0][0] == f:  # A lone droplet lost beside a new one: nothing merged.
      for tr in gone:
        labels[tr.rows[-1]] = "death"
        events.append({"frame": tr.rows[-1][0], "track": tr.id, "parents": "",
                       "kind": "death"})
      continue
    k = next(i for i, r in enumerate(child.rows) if r[0] == f)
    if not any(seen):  # Not seen in the volume: labelled, and the child's track goes on.
      labels.setdefault(child.rows[k], "coalescence")
      events.append({"frame": f, "track": child.id, "parents": ";".join([str(child.id), *ids]),
                     "kind": "coalescence"})
      continue
    later = Track(next_id, child.times[k:], child.rows[k:], child.r[k:], child.last)
    next_id += 1
    child.times, child.rows, child.r = child.times[:k], child.rows[:k], child.r[:k]
    successor[child] = later
    created.append(later)
    # A return from a gap at f belonged to the old part, which now ends before f; the new
    # part begins at f with the coalescence.
    events[:] = [e for e in events if not (e["kind"] == "gap" and e["frame"] == f
                                           and e["track"] == child.id)]
    for e in events:  # What happened to the track from f on happened to its later part.
      if e["track"] == child.id and e["frame"] >= f:
        e["track"] = later.id
      if e["frame"] > f and e["parents"]:
        e["parents"] = ";".join(str(later.id) if p == str(child.id) else p
                                for p in e["parents"].split(";"))
    labels[child.rows[-1]] = "merged"
    labels[later.rows[0]] = "coalescence"
    events.append({"frame": f, "track": later.id, "parents": ";".join([str(child.id), *ids]),
                   "kind": "coalescence"})
  return created


def _table(tables, times_s, tracks: list[Track], labels: dict) -> pd.DataFrame:
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
