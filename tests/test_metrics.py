import numpy as np

from dropamort.metrics import detection_metrics, false_by_radius, match, recall_by_radius


def table(xy, r=None, comp=None):
  xy = np.asarray(xy, float).reshape(-1, 2)
  r = np.full(len(xy), 2.0) if r is None else np.asarray(r, float)
  comp = np.zeros((len(xy), 1)) if comp is None else np.asarray(comp, float)
  return {"x": xy[:, 0], "y": xy[:, 1], "r": r, "composition": comp}


def test_known_tp_fp_fn():
  true = table([[10, 10], [20, 20], [30, 30]], r=[2, 2, 4])
  pred = table([[10.5, 10], [29, 31], [50, 50]])  # hit, hit (tol 2 for r=4), false alarm
  m = detection_metrics([true], [pred])
  assert (m["tp"], m["fp"], m["fn"]) == (2, 1, 1)
  np.testing.assert_allclose([m["precision"], m["recall"], m["f1"], m["jaccard"]],
                             [2 / 3, 2 / 3, 2 / 3, 2 / 4])
  np.testing.assert_allclose(m["position_rmse"], np.sqrt((0.25 + 2) / 2))


def test_tolerance_is_max_of_one_pixel_and_half_radius():
  true = table([[0, 0], [100, 100]], r=[1.0, 6.0])
  assert len(match(true, table([[1.1, 0]]))[0]) == 0      # 1.1 > max(1, 0.5)
  assert len(match(true, table([[0.9, 0]]))[0]) == 1
  assert len(match(true, table([[102.9, 100]]))[0]) == 1  # 2.9 <= 3
  assert len(match(true, table([[103.1, 100]]))[0]) == 0


def test_hungarian_prefers_more_matches_then_shorter_distance():
  # Greedy nearest-first would pair pred 0 with true 1 and leave true 0 unmatched.
  true = table([[0, 0], [1.6, 0]], r=[2, 2])
  pred = table([[0.9, 0], [2.5, 0]])
  i, j = match(true, pred)
  assert sorted(zip(i, j)) == [(0, 0), (1, 1)]
  # A tie: two predictions equally close; exactly one is matched.
  i, j = match(table([[0, 0]]), table([[0.5, 0], [-0.5, 0]]))
  assert len(i) == 1


def test_empty_cases_are_undefined_not_made_up():
  empty = table(np.zeros((0, 2)))
  m = detection_metrics([empty], [empty])
  assert m["tp"] == 0 and all(np.isnan(m[k]) for k in (
      "precision", "recall", "f1", "jaccard", "position_rmse", "radius_rel_error"))
  m = detection_metrics([table([[1, 1]])], [empty])
  assert (m["tp"], m["fn"], m["recall"], m["f1"]) == (0, 1, 0.0, 0.0)
  assert np.isnan(m["precision"])  # Nothing predicted: precision is undefined.
  m = detection_metrics([empty], [table([[1, 1]])])
  assert (m["fp"], m["precision"], m["f1"]) == (1, 0.0, 0.0) and np.isnan(m["recall"])


def test_the_same_numbers_for_training_evaluation_and_benchmarks():
  """Evaluation's subsets are built from these scores and errors (one module)."""
  from dropamort.evaluation.detection import subset_metrics

  true = table([[10, 10], [20, 20], [30, 30]], r=[2, 2, 4])
  pred = table([[10.5, 10], [29, 31], [50, 50]], r=[2.2, 2.0, 3.0])  # r errors 10%, 50%
  every = lambda t: np.ones(len(t["x"]), bool)
  a, b = detection_metrics([true], [pred]), subset_metrics([true], [pred], every, every)
  for k in b:
    np.testing.assert_allclose(a[k], b[k], err_msg=k)
  np.testing.assert_allclose([a["radius_rel_error"], a["radius_rel_err_median"]], [0.3, 0.3])


def test_false_predictions_are_counted_by_their_radius_under_the_labelled_rule():
  """By hand: the label of r 10 is matched by the prediction at (100.5, 100); the label of
  r 5 is ignored (< 6 px), so the prediction on it (r 5) is false; r 3 is below the 4.2 px
  cut and not scored; the far ones of r 7 and 30 are false."""
  true = table([[100, 100], [200, 200]], r=[10, 5])
  pred = table([[100.5, 100], [200, 200], [300, 300], [400, 400], [500, 500]],
               r=[9, 5, 3, 7, 30])
  assert false_by_radius([true], [pred], [4.2, 6, 8, 12]) == [1, 1, 0, 1]
  assert false_by_radius([true, true], [pred, pred], [4.2, 6]) == [2, 4]


def test_recall_is_counted_by_the_labels_radius_under_the_labelled_rule():
  """By hand: labels of r 10 and 40 are found (centres within 0.5 r), the one of r 30 is
  not (16 px off, tolerance 15), r 20 has no prediction near, r 5 is below 6 px and not
  scored; a found label counts once however many predictions lie near it."""
  true = table([[100, 100], [300, 300], [500, 500], [700, 700], [900, 900]],
               r=[10, 40, 30, 20, 5])
  pred = table([[101, 100], [102, 100], [310, 310], [516, 500], [900, 900]],
               r=[9, 9, 35, 30, 5])
  got = recall_by_radius([true], [pred], [6, 12, 24, 48])
  assert got == [{"labels": 1, "found": 1, "recall": 1.0},
                 {"labels": 1, "found": 0, "recall": 0.0},
                 {"labels": 2, "found": 1, "recall": 0.5},
                 {"labels": 0, "found": 0, "recall": None}]
  two = recall_by_radius([true, true], [pred, table([[700, 700]], r=[18])], [6, 24])
  assert [b["found"] for b in two] == [1 + 1, 1 + 0] and [b["labels"] for b in two] == [4, 4]
