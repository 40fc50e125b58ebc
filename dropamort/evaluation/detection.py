"""Detection metrics broken down by true radius and with the image border band left out.

Matching is done once on whole images (``metrics.match``); each outcome is then assigned
to a subset: a matched pair and a missed true droplet by the *true* droplet, a false
detection by the *predicted* one. So a droplet at r = 1.6 found as r = 1.4 counts as
found in the r >= 1.5 bin, not as one miss plus one false detection.
"""

from __future__ import annotations

import numpy as np

from dropamort.metrics import match


def _scores(tp: int, fp: int, fn: int) -> dict:
  return {"tp": tp, "fp": fp, "fn": fn,
          "precision": tp / (tp + fp) if tp + fp else float("nan"),
          "recall": tp / (tp + fn) if tp + fn else float("nan"),
          "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")}


def _errors(pairs_t: list[dict], pairs_p: list[dict]) -> dict:
  if not pairs_t:
    return {}
  cat = lambda tabs, k: np.concatenate([np.asarray(t[k]) for t in tabs])
  dx, dy = cat(pairs_p, "x") - cat(pairs_t, "x"), cat(pairs_p, "y") - cat(pairs_t, "y")
  rt, rp = cat(pairs_t, "r"), cat(pairs_p, "r")
  out = {"position_rmse": float(np.sqrt(np.mean(dx**2 + dy**2))) if dx.size else None,
         "radius_rel_error": float(np.mean(np.abs(rp - rt) / rt)) if rt.size else None}
  if "composition" in pairs_t[0] and "composition" in pairs_p[0] and rt.size:
    out["composition_mae"] = float(np.mean(np.abs(cat(pairs_p, "composition")
                                                  - cat(pairs_t, "composition"))))
  return out


def subset_metrics(true_tables, pred_tables, keep_true, keep_pred, pairs=None) -> dict:
  """F1 etc. on a subset: ``keep_true(table) -> bool mask`` selects true droplets
  (their matches and misses), ``keep_pred`` selects the false detections counted.
  ``pairs``: the matches of each image if already computed (``metrics.match``)."""
  tp = fp = fn = 0
  pairs_t, pairs_p = [], []
  if pairs is None:
    pairs = [match(t, p) for t, p in zip(true_tables, pred_tables)]
  for t, p, (i, j) in zip(true_tables, pred_tables, pairs):
    kt, kp = np.asarray(keep_true(t), bool), np.asarray(keep_pred(p), bool)
    matched_t = np.zeros(len(t["x"]), bool)
    matched_t[i] = True
    matched_p = np.zeros(len(p["x"]), bool)
    matched_p[j] = True
    sel = kt[i]
    tp += int(sel.sum())
    fn += int((kt & ~matched_t).sum())
    fp += int((kp & ~matched_p).sum())
    pairs_t.append({k: np.asarray(v)[i[sel]] for k, v in t.items()})
    pairs_p.append({k: np.asarray(v)[j[sel]] for k, v in p.items()})
  return {**_scores(tp, fp, fn), **_errors(pairs_t, pairs_p)}


def by_radius(true_tables, pred_tables, edges, pairs=None) -> list[dict]:
  """``subset_metrics`` per radius bin [edges[k], edges[k+1]) (true r; predicted r for
  false detections)."""
  if pairs is None:
    pairs = [match(t, p) for t, p in zip(true_tables, pred_tables)]
  out = []
  for lo, hi in zip(edges[:-1], edges[1:]):
    inside = lambda t, lo=lo, hi=hi: (np.asarray(t["r"]) >= lo) & (np.asarray(t["r"]) < hi)
    out.append({"r_min": float(lo), "r_max": float(hi),
                **subset_metrics(true_tables, pred_tables, inside, inside, pairs)})
  return out


def interior(height: int, width: int, band: float):
  """A mask function: centres at least ``band`` px from every image edge."""
  def keep(t):
    x, y = np.asarray(t["x"]), np.asarray(t["y"])
    return (x >= band) & (x < width - band) & (y >= band) & (y < height - band)
  return keep


def min_radius(r_min: float):
  return lambda t: np.asarray(t["r"]) >= r_min
