"""Tracking metrics on hand-made truth and predictions whose scores are counted by hand."""

import pandas as pd
import pytest

from dropamort.sequence.metrics import (coalescence_scores, frame_matches, idf1, mota,
                                        scored_events, tracking_scores)


def table(rows):
  return pd.DataFrame(rows, columns=["track", "frame", "x", "y", "r"])


# Two true tracks over three frames: A (id 1, r 4, match within 2 px) and B (id 2, r 6,
# match within 3 px).
TRUTH = table([(1, f, 10.0, 10.0, 4.0) for f in range(3)]
              + [(2, f, 50.0, 50.0, 6.0) for f in range(3)])
PRED = table([
    (10, 0, 10.5, 10.0, 4.0), (20, 0, 50.0, 50.0, 6.0),  # Frame 0: A-10, B-20.
    (10, 1, 10.0, 10.0, 4.0), (20, 1, 50.0, 52.5, 6.0),  # Frame 1: A-10, B-20 (2.5 < 3 px),
    (99, 1, 100.0, 100.0, 5.0),  # and a false positive.
    (11, 2, 10.0, 10.5, 4.0),  # Frame 2: A-11, an identity switch (10 -> 11);
    (21, 2, 50.0, 53.5, 6.0),  # B missed: 3.5 px > 3 px, a false positive too.
])


def test_mota_counts_misses_false_positives_and_identity_switches():
  # GT 6; matches 5 (A in 3 frames, B in 2); FN 1 (B, frame 2); FP 2 (99, 21);
  # IDSW 1 (A: 10 -> 11). MOTA = 1 - (1 + 2 + 1) / 6 = 1/3.
  s = mota(TRUTH, PRED)
  assert (s["gt"], s["matches"], s["fn"], s["fp"], s["idsw"]) == (6, 5, 1, 2, 1)
  assert s["mota"] == pytest.approx(1 / 3)


def test_idf1_assigns_tracks_globally():
  # Co-occurrences within the match distance: (A, 10) 2 frames, (A, 11) 1, (B, 20) 2.
  # Assignment A-10, B-20: IDTP 4; IDFN = 6 - 4 = 2; IDFP = 7 - 4 = 3;
  # IDF1 = 8 / (8 + 3 + 2) = 8/13.
  s = idf1(TRUTH, PRED)
  assert (s["idtp"], s["idfn"], s["idfp"]) == (4, 2, 3)
  assert s["idf1"] == pytest.approx(8 / 13)


def test_a_predicted_track_is_assigned_to_one_true_track_only():
  # Predicted 10 follows A (frames 0-2) and then B (3-4); 20 is on B in frame 3.
  # Co-occurrences (A, 10) 3, (B, 10) 2, (B, 20) 1; one to one: A-10, B-20, IDTP 4,
  # IDF1 = 2·4 / (5 true + 6 predicted) = 8/11 (not A-10, B-10: 10 is A's).
  truth = table([(1, f, 10.0, 10.0, 4.0) for f in range(3)]
                + [(2, f, 40.0, 10.0, 4.0) for f in (3, 4)])
  pred = table([(10, f, 10.0, 10.0, 4.0) for f in range(3)]
               + [(10, f, 40.0, 10.0, 4.0) for f in (3, 4)] + [(20, 3, 40.5, 10.0, 4.0)])
  s = idf1(truth, pred)
  assert s["idtp"] == 4 and s["idf1"] == pytest.approx(8 / 11)


def test_an_identity_switch_is_a_change_from_the_last_matched_id():
  # A matched to 10, missed, 10 again (no switch), missed, then 11 (a switch across the
  # gap); the one-to-one matching pairs A with 10 (0.5 px) rather than 12 (1.5 px) in
  # frame 0.
  truth = table([(1, f, 10.0, 10.0, 4.0) for f in range(5)])
  pred = table([(10, 0, 10.5, 10.0, 4.0), (12, 0, 11.5, 10.0, 4.0),
                (10, 2, 10.0, 10.0, 4.0), (11, 4, 10.0, 10.0, 4.0)])
  assert frame_matches(truth, pred)[0] == {1: 10}
  s = mota(truth, pred)  # GT 5, FN 2, FP 1 (12), IDSW 1: MOTA = 1 - 4/5.
  assert (s["fn"], s["fp"], s["idsw"]) == (2, 1, 1)
  assert s["mota"] == pytest.approx(0.2)


# A (1) and B (2) touch and merge into C (3) at frame 2.
MERGE_TRUTH = table([(1, 0, 10.0, 10.0, 5.0), (1, 1, 10.0, 10.0, 5.0),
                     (2, 0, 22.0, 10.0, 5.0), (2, 1, 22.0, 10.0, 5.0),
                     (3, 2, 16.0, 10.0, 6.3), (3, 3, 16.0, 10.0, 6.5)])
MERGE_EVENTS = [(2, 3, (1, 2))]
MERGE_PRED = MERGE_TRUTH.assign(track=MERGE_TRUTH.track * 10, x=MERGE_TRUTH.x + 0.3)


def events(*rows):
  return pd.DataFrame(rows, columns=["frame", "track", "parents"])


@pytest.mark.parametrize("pred_events, recall", [
    (events((2, 30, "10;20")), 1.0),
    (events((3, 30, "20;10")), 1.0),  # One frame late, parents in any order.
    (events((4, 30, "10;20")), 0.0),  # Two frames late.
    (events((2, 30, "10;99")), 0.0),  # One parent only.
    (events((2, 20, "10;20")), 0.0),  # The child is not the merged droplet.
    (None, 0.0),  # No events predicted: none found.
])
def test_coalescence_recall(pred_events, recall):
  s = coalescence_scores(MERGE_TRUTH, MERGE_EVENTS, MERGE_PRED, pred_events)
  assert s["true_events"] == 1
  assert s["coalescence_recall"] == pytest.approx(recall, nan_ok=True)


def test_coalescence_precision_counts_predicted_events_that_match_none():
  pred_events = events((2, 30, "10;20"), (1, 20, "10;99"))
  s = tracking_scores(MERGE_TRUTH, MERGE_EVENTS, MERGE_PRED, pred_events)
  assert s["coalescence_recall"] == 1.0 and s["coalescence_precision"] == 0.5
  assert s["mota"] == 1.0 and s["idf1"] == 1.0


def test_only_events_a_reader_could_see_are_scored():
  # The child of the second event is never catalogued (its centre left the frame).
  assert scored_events(MERGE_TRUTH, MERGE_EVENTS + [(3, 7, (3, 2))]) == MERGE_EVENTS
  # One parent catalogued at f - 1 is not enough.
  assert scored_events(MERGE_TRUTH[MERGE_TRUTH.track != 2], MERGE_EVENTS) == []
