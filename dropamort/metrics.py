"""The one metrics module: matching, detection scores, errors of matched pairs, coverage.

Used by training validation, ``evaluate.py`` and the benchmarks alike. Tables are dicts
of numpy arrays in the schema of ``dropamort.schema`` (at least ``x``, ``y``, ``r``).

A predicted droplet matches a true one when their centres are within
max(``min_tol``, ``rel_tol``·r_true) (1 px and 0.5 by default); pairs are chosen one to
one by the Hungarian algorithm on centre distance.

Empty cases have one defined value, NaN ("undefined"), never a made-up 0 or 1: precision
with no predictions, recall with no true droplets, F1 and Jaccard with neither, and every
pair error with no matched pair. JSON reports write NaN as null.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from dropamort.schema import LEVEL, interval_names


def match(true: dict, pred: dict, *, min_tol: float = 1.0, rel_tol: float = 0.5):
  """One-to-one matches of minimal total distance among pairs within tolerance.

  Returns:
    (i_true, j_pred): index arrays of matched pairs.
  """
  n, m = len(true["x"]), len(pred["x"])
  if n == 0 or m == 0:
    return np.zeros(0, int), np.zeros(0, int)
  d = np.hypot(np.asarray(true["x"])[:, None] - np.asarray(pred["x"])[None],
               np.asarray(true["y"])[:, None] - np.asarray(pred["y"])[None])
  tol = np.maximum(min_tol, rel_tol * np.asarray(true["r"]))[:, None]
  ok = d <= tol
  # Pairs out of tolerance cost more than any set of allowed pairs, so the assignment
  # maximizes the number of allowed matches first and minimizes distance second.
  big = 1.0 + d[ok].sum() if ok.any() else 1.0
  i, j = linear_sum_assignment(np.where(ok, d, big * (n + m)))
  keep = ok[i, j]
  return i[keep], j[keep]


def _ratio(num: float, den: float) -> float:
  return num / den if den else float("nan")


def scores(tp: int, fp: int, fn: int) -> dict:
  """Counts with precision, recall, F1 and Jaccard (NaN where undefined)."""
  return {"tp": int(tp), "fp": int(fp), "fn": int(fn),
          "precision": _ratio(tp, tp + fp), "recall": _ratio(tp, tp + fn),
          "f1": _ratio(2 * tp, 2 * tp + fp + fn), "jaccard": _ratio(tp, tp + fp + fn)}


def pair_errors(true_pairs: list[dict], pred_pairs: list[dict]) -> dict:
  """Errors over matched pairs (row k of ``true_pairs[b]`` matches row k of
  ``pred_pairs[b]``): position RMSE (px), mean and median relative radius error, and the
  composition MAE when both sides have a composition. NaN with no pair."""
  cat = lambda tabs, k: (np.concatenate([np.asarray(t[k], float) for t in tabs])
                         if tabs else np.zeros(0))
  nan = float("nan")
  dx, dy = cat(pred_pairs, "x") - cat(true_pairs, "x"), cat(pred_pairs, "y") - cat(
      true_pairs, "y")
  rt, rp = cat(true_pairs, "r"), cat(pred_pairs, "r")
  rel = np.abs(rp - rt) / rt
  out = {"position_rmse": float(np.sqrt(np.mean(dx**2 + dy**2))) if dx.size else nan,
         "radius_rel_error": float(rel.mean()) if rel.size else nan,
         "radius_rel_err_median": float(np.median(rel)) if rel.size else nan}
  if true_pairs and all("composition" in t for t in true_pairs) and all(
      "composition" in p for p in pred_pairs):
    ct, cp = cat(true_pairs, "composition"), cat(pred_pairs, "composition")
    known = np.isfinite(ct)  # NaN: a true droplet whose composition is not known.
    out["composition_mae"] = float(np.mean(np.abs(cp - ct)[known])) if known.any() else nan
  return out


def coverage(true_tables, pred_tables, pairs, level: float = LEVEL) -> dict:
  """Share of matched true values inside the predicted central ``level`` intervals, for
  each quantity both sides have (``coverage_x``, ``coverage_r``, ...)."""
  out = {}
  for key in ("x", "y", "r", "composition"):
    lo, hi = interval_names(key, level)
    if not pred_tables or lo not in pred_tables[0] or key not in true_tables[0]:
      continue
    inside = [((np.asarray(p[lo])[j] <= np.asarray(t[key])[i])
               & (np.asarray(t[key])[i] <= np.asarray(p[hi])[j]))[
                   np.isfinite(np.asarray(t[key], float)[i])].ravel()
              for t, p, (i, j) in zip(true_tables, pred_tables, pairs)]
    inside = np.concatenate(inside) if inside else np.zeros(0, bool)
    out[f"coverage_{key}"] = float(inside.mean()) if inside.size else float("nan")
  return out


def matched_rows(tables: list[dict], index: list[np.ndarray]) -> list[dict]:
  """The rows ``index[b]`` of each table (the matched side of each image)."""
  return [{k: np.asarray(v)[i] for k, v in t.items()} for t, i in zip(tables, index)]


def detection_metrics(true_tables, pred_tables, *, level: float = LEVEL,
                      min_tol: float = 1.0, rel_tol: float = 0.5) -> dict:
  """Scores, pair errors and interval coverage, pooled over images."""
  pairs = [match(t, p, min_tol=min_tol, rel_tol=rel_tol)
           for t, p in zip(true_tables, pred_tables)]
  tp = sum(len(i) for i, _ in pairs)
  n_true = sum(len(t["x"]) for t in true_tables)
  n_pred = sum(len(p["x"]) for p in pred_tables)
  out = scores(tp, n_pred - tp, n_true - tp)
  out.update(pair_errors(matched_rows(true_tables, [i for i, _ in pairs]),
                         matched_rows(pred_tables, [j for _, j in pairs])))
  out.update(coverage(true_tables, pred_tables, pairs, level))
  return out


# Labelled real images whose small droplets are not all labelled (the condensation set's
# rule, shared/data/condensation/README.md): labels below LABEL_R_MIN px are ignored, and
# predictions below PRED_FACTOR of it; a match is within max(REAL_MIN_TOL px, 0.5 r).
LABEL_R_MIN, PRED_FACTOR, REAL_MIN_TOL = 6.0, 0.7, 2.0


def above(table: dict, r_min: float) -> dict:
  """The rows of a table with r >= r_min."""
  keep = np.asarray(table["r"]) >= r_min
  return {k: np.asarray(v)[keep] for k, v in table.items()}


def labelled_scores(true_tables, pred_tables, *, label_r_min: float = LABEL_R_MIN,
                    pred_factor: float = PRED_FACTOR, min_tol: float = REAL_MIN_TOL) -> dict:
  """``detection_metrics`` under the labelled-real-set rule (see the constants above)."""
  return detection_metrics([above(t, label_r_min) for t in true_tables],
                           [above(p, pred_factor * label_r_min) for p in pred_tables],
                           min_tol=min_tol, rel_tol=0.5)


def _labelled_pairs(true_tables, pred_tables, label_r_min: float, pred_factor: float,
                    min_tol: float):
  """Per image, the scored labels and predictions under the labelled-real-set rule and
  their matches: (true, pred, i_true, j_pred)."""
  for t, p in zip(true_tables, pred_tables):
    t, p = above(t, label_r_min), above(p, pred_factor * label_r_min)
    yield (t, p, *match(t, p, min_tol=min_tol, rel_tol=0.5))


def _bin_counts(r, edges) -> np.ndarray:
  """How many of ``r`` fall in each bin [edges[k], edges[k + 1]) (the last open above)."""
  k = np.searchsorted(np.asarray(edges), np.asarray(r), side="right") - 1
  return np.bincount(k[k >= 0], minlength=len(edges))[:len(edges)]


def false_by_radius(true_tables, pred_tables, edges, *, label_r_min: float = LABEL_R_MIN,
                    pred_factor: float = PRED_FACTOR, min_tol: float = REAL_MIN_TOL) -> list:
  """Under the labelled-real-set rule (as ``labelled_scores`` matches): how many scored
  predictions match no label, per bin [edges[k], edges[k + 1]) of their own radius (the
  last bin is open above)."""
  counts = np.zeros(len(edges), int)
  for _, p, _, j in _labelled_pairs(true_tables, pred_tables, label_r_min, pred_factor,
                                    min_tol):
    counts += _bin_counts(np.delete(np.asarray(p["r"]), j), edges)
  return counts.tolist()


def recall_by_radius(true_tables, pred_tables, edges, *, label_r_min: float = LABEL_R_MIN,
                     pred_factor: float = PRED_FACTOR, min_tol: float = REAL_MIN_TOL) -> list:
  """Under the labelled-real-set rule (as ``labelled_scores`` matches): per bin
  [edges[k], edges[k + 1]) of the labels' radius (the last open above), the labels, how
  many of them are matched, and that share (None for an empty bin)."""
  labels, found = np.zeros(len(edges), int), np.zeros(len(edges), int)
  for t, _, i, _ in _labelled_pairs(true_tables, pred_tables, label_r_min, pred_factor,
                                    min_tol):
    labels += _bin_counts(t["r"], edges)
    found += _bin_counts(np.asarray(t["r"])[i], edges)
  return [{"labels": int(n), "found": int(f), "recall": None if n == 0 else f / n}
          for n, f in zip(labels, found)]
