"""Detection metrics broken down by true radius and with the image border band left out.

Matching is done once on whole images (``metrics.match``); each outcome is then assigned
to a subset: a matched pair and a missed true droplet by the *true* droplet, a false
detection by the *predicted* one. So a droplet at r = 1.6 found as r = 1.4 counts as
found in the r >= 1.5 bin, not as one miss plus one false detection.
"""

from __future__ import annotations

import numpy as np

from dropamort.metrics import match, matched_rows, pair_errors, scores


def subset_metrics(true_tables, pred_tables, keep_true, keep_pred, pairs=None) -> dict:
  """F1 etc. on a subset: ``keep_true(table) -> bool mask`` selects true droplets
  (their matches and misses), ``keep_pred`` selects the false detections counted.
  ``pairs``: the matches of each image if already computed (``metrics.match``)."""
  tp = fp = fn = 0
  rows_t, rows_p = [], []
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
    rows_t.append(i[sel])
    rows_p.append(j[sel])
  return {**scores(tp, fp, fn), **pair_errors(matched_rows(true_tables, rows_t),
                                              matched_rows(pred_tables, rows_p))}


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
