"""Detection by radius bin and with the border band left out, on hand-built tables."""

import numpy as np

from dropamort.evaluation.detection import by_radius, interior, subset_metrics
from dropamort.metrics import detection_metrics


def table(xy, r):
  xy = np.asarray(xy, float).reshape(-1, 2)
  return {"x": xy[:, 0], "y": xy[:, 1], "r": np.asarray(r, float),
          "composition": np.zeros((len(xy), 1))}


TRUE = table([[10, 10], [30, 30], [50, 50]], [1.2, 2.0, 4.0])
# Matches for true 0 (as r 1.6) and true 2; false detections with r 1.0 and r 3.0.
PRED = table([[10.3, 10], [50, 51], [70, 70], [90, 10]], [1.6, 4.2, 1.0, 3.0])


def test_radius_bins_assign_pairs_and_misses_by_true_radius():
  lo, hi = by_radius([TRUE], [PRED], [1.0, 1.5, np.inf])
  assert (lo["tp"], lo["fp"], lo["fn"]) == (1, 1, 0)  # r 1.2 found (as 1.6); FP r 1.0.
  assert (hi["tp"], hi["fp"], hi["fn"]) == (1, 1, 1)  # r 4 found, r 2 missed; FP r 3.0.
  np.testing.assert_allclose([lo["f1"], hi["f1"]], [2 / 3, 0.5])
  np.testing.assert_allclose(hi["position_rmse"], 1.0)
  np.testing.assert_allclose(hi["radius_rel_error"], 0.05)


def test_whole_set_agrees_with_detection_metrics():
  every = lambda t: np.ones(len(t["x"]), bool)
  mine = subset_metrics([TRUE, TRUE], [PRED, PRED], every, every)
  ref = detection_metrics([TRUE, TRUE], [PRED, PRED])
  for k in ("tp", "fp", "fn", "f1", "precision", "recall", "position_rmse",
            "radius_rel_error", "composition_mae"):
    np.testing.assert_allclose(mine[k], ref[k])


def test_border_band_leaves_out_droplets_near_the_edge():
  keep = interior(height=100, width=100, band=15)
  m = subset_metrics([TRUE], [PRED], keep, keep)
  # True (10, 10) and the FP at (90, 10) lie in the band; the rest stays.
  assert (m["tp"], m["fp"], m["fn"]) == (1, 1, 1)


def test_empty_subset_gives_no_numbers():
  none = lambda t: np.zeros(len(t["x"]), bool)
  m = subset_metrics([TRUE], [PRED], none, none)
  assert (m["tp"], m["fp"], m["fn"]) == (0, 0, 0) and np.isnan(m["f1"])
