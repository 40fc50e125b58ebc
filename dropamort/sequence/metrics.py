"""Tracking metrics of predicted droplet tracks against a simulated sequence's truth.

Tables have columns track, frame, x, y, r (px). In every frame, true and predicted
droplets are matched one to one by the Hungarian algorithm on centre distance, a pair
allowed within max(2 px, 0.5·r_true) (the labelled-set rule of ``dropamort.metrics``).

- MOTA (CLEAR MOT, Bernardin & Stiefelhagen 2008): 1 − (FN + FP + IDSW) / GT, each summed
  over frames: FN true droplets unmatched, FP predictions unmatched, GT true droplets;
  IDSW counts the frames where a true track is matched to a predicted id other than the
  one it was last matched to (in any earlier frame).
- IDF1 (Ristani et al. 2016): true and predicted tracks are assigned one to one, globally
  (Hungarian), maximizing IDTP, the number of frames in which an assigned pair are both
  present and within the match distance of each other; IDFN = true detections − IDTP,
  IDFP = predicted detections − IDTP, IDF1 = 2·IDTP / (2·IDTP + IDFP + IDFN).
- Coalescence recall: of the true events whose child is catalogued at its frame f and at
  least two of whose parents are catalogued at f − 1, the fraction for which some
  predicted event (frame, track = its child, parents joined by ';') has its frame in
  [f − 1, f + 1], a child the per-frame matching pairs with the true child in a frame
  of [f − 1, f + 1], and at least two distinct true parents each paired by the matching
  with one of its parents in the true parent's last two frames (f − 2, f − 1).
  Coalescence precision: the fraction of predicted events that meet these conditions for
  some scored true event.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment

from dropamort.metrics import match

MIN_TOL = 2.0  # px
REL_TOL = 0.5  # of the true radius


def _frames(table: pd.DataFrame) -> dict[int, pd.DataFrame]:
  return {int(f): g for f, g in table.groupby("frame")}


def _allowed(t: pd.DataFrame, p: pd.DataFrame):
  """Centre distances (true × predicted) and which pairs are allowed."""
  d = np.hypot(t.x.to_numpy()[:, None] - p.x.to_numpy()[None, :],
               t.y.to_numpy()[:, None] - p.y.to_numpy()[None, :])
  return d, d <= np.maximum(MIN_TOL, REL_TOL * t.r.to_numpy())[:, None]


def frame_matches(truth: pd.DataFrame, pred: pd.DataFrame) -> dict[int, dict[int, int]]:
  """Per frame, the Hungarian match {true track: predicted track} (allowed pairs only),
  by the labelled-set matcher ``dropamort.metrics.match``."""
  preds, out = _frames(pred), {}
  for f, t in _frames(truth).items():
    p = preds.get(f)
    out[f] = {}
    if p is None or not len(p):
      continue
    i, j = match(t, p, min_tol=MIN_TOL, rel_tol=REL_TOL)
    out[f] = dict(zip(t.track.to_numpy()[i].tolist(), p.track.to_numpy()[j].tolist()))
  return out


def mota(truth: pd.DataFrame, pred: pd.DataFrame, matches=None) -> dict:
  """CLEAR MOT accuracy and its counts (see the module docstring)."""
  matches = frame_matches(truth, pred) if matches is None else matches
  gt, n_pred = len(truth), len(pred)
  tp = sum(len(m) for m in matches.values())
  last, idsw = {}, 0
  for f in sorted(matches):
    for t, p in matches[f].items():
      idsw += t in last and last[t] != p
      last[t] = p
  fn, fp = gt - tp, n_pred - tp
  return {"mota": 1.0 - (fn + fp + idsw) / gt if gt else float("nan"), "fn": fn, "fp": fp,
          "idsw": int(idsw), "gt": gt, "matches": tp}


def id_assignment(truth: pd.DataFrame, pred: pd.DataFrame) -> tuple[dict[int, int], int]:
  """The IDF1 assignment {true track: predicted track} and its IDTP (module docstring)."""
  co = defaultdict(int)
  preds = _frames(pred)
  for f, t in _frames(truth).items():
    p = preds.get(f)
    if p is None or not len(p):
      continue
    _, ok = _allowed(t, p)
    tt, pt = t.track.to_numpy(), p.track.to_numpy()
    for i, j in zip(*np.nonzero(ok)):
      co[(int(tt[i]), int(pt[j]))] += 1
  if not co:
    return {}, 0
  ts = sorted({k[0] for k in co})
  ps = sorted({k[1] for k in co})
  ti, pj = {t: i for i, t in enumerate(ts)}, {p: j for j, p in enumerate(ps)}
  w = np.zeros((len(ts), len(ps)))
  for (t, p), n in co.items():
    w[ti[t], pj[p]] = n
  i, j = linear_sum_assignment(-w)
  keep = w[i, j] > 0
  return ({ts[a]: ps[b] for a, b in zip(i[keep], j[keep])}, int(w[i, j].sum()))


def idf1(truth: pd.DataFrame, pred: pd.DataFrame) -> dict:
  """IDF1 and its counts (see the module docstring)."""
  assignment, idtp = id_assignment(truth, pred)
  idfn, idfp = len(truth) - idtp, len(pred) - idtp
  den = 2 * idtp + idfp + idfn
  return {"idf1": 2 * idtp / den if den else float("nan"), "idtp": idtp, "idfp": idfp,
          "idfn": idfn}


def parse_parents(parents) -> tuple[int, ...]:
  """Parent ids from a ';'-joined string or a sequence of ints."""
  if isinstance(parents, str):
    return tuple(int(p) for p in parents.split(";") if p.strip())
  return tuple(int(p) for p in parents)


def scored_events(truth: pd.DataFrame, events) -> list[tuple[int, int, tuple[int, ...]]]:
  """The true events a reader could see: child catalogued at its frame f, at least two
  parents catalogued at f − 1; their parents listed are those catalogued."""
  seen = set(zip(truth.track.tolist(), truth.frame.tolist()))
  out = []
  for f, child, parents in _event_rows(events):
    visible = tuple(p for p in parents if (p, f - 1) in seen)
    if (child, f) in seen and len(visible) >= 2:
      out.append((f, child, visible))
  return out


def _event_rows(events):
  if isinstance(events, pd.DataFrame):
    events = zip(events["frame"], events["track"], events["parents"])
  return [(int(f), int(c), parse_parents(p)) for f, c, p in events]


def _hits(true_event, pred_event, matches) -> bool:
  f, child, parents = true_event
  g, pchild, pparents = pred_event
  if abs(g - f) > 1:
    return False
  if not any(matches.get(h, {}).get(child) == pchild for h in (f - 1, f, f + 1)):
    return False
  found = {p for p in parents
           if any(matches.get(h, {}).get(p) in pparents for h in (f - 2, f - 1))}
  return len(found) >= 2


def coalescence_scores(truth: pd.DataFrame, true_events, pred: pd.DataFrame, pred_events,
                       matches=None) -> dict:
  """Coalescence recall and precision (see the module docstring); NaN where nothing is
  there to score (no scored true event, or no predicted event)."""
  matches = frame_matches(truth, pred) if matches is None else matches
  scored = scored_events(truth, true_events)
  predicted = [] if pred_events is None else _event_rows(pred_events)
  found = [any(_hits(e, p, matches) for p in predicted) for e in scored]
  right = [any(_hits(e, p, matches) for e in scored) for p in predicted]
  return {"coalescence_recall": float(np.mean(found)) if found else float("nan"),
          "coalescence_precision": float(np.mean(right)) if right else float("nan"),
          "true_events": len(scored), "predicted_events": len(predicted)}


def tracking_scores(truth: pd.DataFrame, true_events, pred: pd.DataFrame,
                    pred_events=None) -> dict:
  """MOTA, IDF1 and coalescence scores of one predicted tracks table."""
  matches = frame_matches(truth, pred)
  return {**mota(truth, pred, matches), **idf1(truth, pred),
          **coalescence_scores(truth, true_events, pred, pred_events, matches)}
