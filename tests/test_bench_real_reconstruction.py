"""bench/real_reconstruction.py's pixel regions: distance to the nearest droplet over its
radius, against a brute-force reference."""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, "bench"))
from real_reconstruction import nearest_d  # noqa: E402


def test_nearest_normalized_distance_matches_brute_force():
  rng = np.random.default_rng(0)
  h, w = 40, 56
  x, y = rng.uniform(-5, w + 5, 25), rng.uniform(-5, h + 5, 25)
  r = rng.uniform(1.0, 9.0, 25)
  yy, xx = np.mgrid[0:h, 0:w] + 0.5
  all_d = np.hypot(xx[..., None] - x, yy[..., None] - y) / r
  want = np.where(all_d < 2, all_d, np.inf).min(-1)
  got = nearest_d((h, w), x, y, r)
  # Within 2 r of some droplet the nearest one is found; farther, inf.
  np.testing.assert_allclose(np.where(got < 2, got, np.inf), want, rtol=1e-12)
  assert (got[want == np.inf] >= 2).all()


def test_missed_and_found_split_the_labelled_discs_by_the_scoring_rule():
  from real_reconstruction import missed_and_found

  # Labels in original px; the analysed grid is at scale 0.5. Label 0 is matched (centre
  # within 0.5 r), label 1 is not (the prediction is 6 px off, tolerance 4 px), label 2 is
  # below the 6 px scoring minimum and counts as neither.
  truth = {"x": np.array([20.0, 60.0, 40.0]), "y": np.array([20.0, 20.0, 60.0]),
           "r": np.array([10.0, 8.0, 4.0])}
  table = {"x": np.array([22.0, 66.0]), "y": np.array([21.0, 20.0]), "r": np.array([9.0, 8.0])}
  circles, missed, found = missed_and_found(truth, table, (40, 40), 0.5)
  for k, want in (("x", 30.0), ("y", 10.0), ("r", 4.0)):  # Label 1, analysed px.
    np.testing.assert_allclose(circles[k], [want])
  yy, xx = np.mgrid[0:40, 0:40] + 0.5
  np.testing.assert_array_equal(found, np.hypot(xx - 10, yy - 10) <= 5)
  np.testing.assert_array_equal(missed, np.hypot(xx - 30, yy - 10) <= 4)


def test_held_truth_takes_the_held_out_images_labels_into_the_cut_frame(tmp_path):
  import pandas as pd
  from PIL import Image

  from dropamort.config import CalibrateConfig, DataConfig, TrainConfig
  from dropamort.data.real import holdout_indices, read_real
  from real_reconstruction import held_truth

  folder = tmp_path / "images"
  folder.mkdir()
  for k in range(4):  # holdout 0.5: every 2nd image is held out (b.png, d.png).
    Image.fromarray(np.zeros((30, 100, 3), np.uint8)).save(folder / f"{'abcd'[k]}.png")
  # b.png: one label inside the cut, one left of it (x 10 < 20), one below the image.
  pd.DataFrame({"image": ["b.png", "b.png", "b.png", "d.png", "a.png"],
                "x": [50.0, 10.0, 60.0, 70.0, 5.0], "y": [10.0, 10.0, 35.0, 12.0, 3.0],
                "r": [7.0, 7.0, 7.0, 9.0, 6.0]}).to_csv(tmp_path / "labels.csv")
  cfg = TrainConfig(data=DataConfig(real=str(folder), scale=0.5, columns=(0.2, 1.0)),
                    calibrate=CalibrateConfig(holdout=0.5))
  read = read_real(cfg.data, 3, (4, 4))
  held = [read[i] for i in holdout_indices(len(read), 0.5)]
  got = held_truth(cfg, str(tmp_path / "labels.csv"), held)
  # 100 px at scale 0.5 is 50 px; the cut starts at column 10 of those, 20 original px.
  np.testing.assert_allclose(got[0]["x"], [30.0])
  np.testing.assert_allclose(got[1]["x"], [50.0])
  np.testing.assert_allclose(got[1]["r"], [9.0])
  assert held_truth(cfg, str(tmp_path / "labels.csv"), [(None, held[0][1])]) is None
  assert held_truth(cfg, str(tmp_path / "missing.csv"), held) is None
