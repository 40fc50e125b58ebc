"""Matching and detection/calibration metrics on flat droplet tables.

Tables are dicts of numpy arrays with at least ``x``, ``y``, ``r`` (px) and
``composition`` (N, T); predictions may also carry ``*_lo``/``*_hi`` interval bounds.
A predicted droplet matches a true one when their centres are within
max(1 px, 0.5·r_true); pairs are chosen by the Hungarian algorithm on centre distance.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment


def match(true: dict, pred: dict, *, min_tol: float = 1.0, rel_tol: float = 0.5):
  """One-to-one matches of minimal total distance among pairs within tolerance.

  Returns:
    (i_true, j_pred): index arrays of matched pairs.
  """
  n, m = len(true["x"]), len(pred["x"])
  if n == 0 or m == 0:
    return np.zeros(0, int), np.zeros(0, int)
  d = np.hypot(true["x"][:, None] - pred["x"][None], true["y"][:, None] - pred["y"][None])
  tol = np.maximum(min_tol, rel_tol * np.asarray(true["r"]))[:, None]
  ok = d <= tol
  # Pairs out of tolerance cost more than any set of allowed pairs, so the assignment
  # maximizes the number of allowed matches first and minimizes distance second.
  big = 1.0 + d[ok].sum() if ok.any() else 1.0
  i, j = linear_sum_assignment(np.where(ok, d, big * (n + m)))
  keep = ok[i, j]
  return i[keep], j[keep]


def _counts(true_tables, pred_tables):
  pairs = [match(t, p) for t, p in zip(true_tables, pred_tables)]
  tp = sum(len(i) for i, _ in pairs)
  n_true = sum(len(t["x"]) for t in true_tables)
  n_pred = sum(len(p["x"]) for p in pred_tables)
  return pairs, tp, n_pred - tp, n_true - tp


def detection_metrics(true_tables, pred_tables) -> dict:
  """Precision, recall, F1, Jaccard and errors on matched pairs, pooled over images."""
  pairs, tp, fp, fn = _counts(true_tables, pred_tables)
  out = {"tp": tp, "fp": fp, "fn": fn,
         "precision": tp / (tp + fp) if tp + fp else 1.0,
         "recall": tp / (tp + fn) if tp + fn else 1.0,
         "jaccard": tp / (tp + fp + fn) if tp + fp + fn else 1.0}
  out["f1"] = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
  gather = lambda tabs, key, idx: np.concatenate(
      [np.asarray(t[key])[k] for t, k in zip(tabs, idx)]) if tp else np.zeros(0)
  ti, pj = [i for i, _ in pairs], [j for _, j in pairs]
  if tp:
    dx = gather(pred_tables, "x", pj) - gather(true_tables, "x", ti)
    dy = gather(pred_tables, "y", pj) - gather(true_tables, "y", ti)
    rt, rp = gather(true_tables, "r", ti), gather(pred_tables, "r", pj)
    ct = gather(true_tables, "composition", ti)
    cp = gather(pred_tables, "composition", pj)
    out["position_rmse"] = float(np.sqrt(np.mean(dx**2 + dy**2)))
    out["radius_rel_error"] = float(np.mean(np.abs(rp - rt) / rt))
    out["composition_mae"] = float(np.mean(np.abs(cp - ct)))
    out.update(coverage(true_tables, pred_tables, pairs))
  return out


def coverage(true_tables, pred_tables, pairs) -> dict:
  """Share of matched true values inside the predicted intervals (``*_lo``..``*_hi``)."""
  out = {}
  for key in ("x", "y", "r", "composition"):
    if f"{key}_lo" not in pred_tables[0]:
      continue
    inside = [((np.asarray(p[f"{key}_lo"])[j] <= np.asarray(t[key])[i])
               & (np.asarray(t[key])[i] <= np.asarray(p[f"{key}_hi"])[j])).ravel()
              for t, p, (i, j) in zip(true_tables, pred_tables, pairs)]
    inside = np.concatenate(inside)
    if inside.size:
      out[f"coverage_{key}"] = float(inside.mean())
  return out
