"""bench/real.py, the whole real-image job (calibrate without labels, infer with no scale
given, score dropamort and a peer), on two condensation images with a tiny calibration."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from dropamort.data.images import read_image
from dropamort.metrics import labelled_scores

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, "bench"))
import peers  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "..", "shared", "data", "condensation")
NAMES = ("DSC_0003.jpg", "DSC_0382.jpg")  # Small droplets; droplets up to 74 px.


@pytest.mark.slow  # A calibration, inference and a peer on two images (~2 min).
@pytest.mark.skipif(not os.path.isdir(DATA), reason="../shared/data/condensation is absent")
def test_bench_real_scores_dropamort_and_a_peer_on_two_images(tmp_path):
  images = tmp_path / "set" / "images"
  images.mkdir(parents=True)
  for name in NAMES:
    shutil.copy(os.path.join(DATA, "images", name), images / name)
  labels = pd.read_csv(os.path.join(DATA, "labels.csv"))
  labels[labels["image"].isin(NAMES)].to_csv(tmp_path / "set" / "labels.csv", index=False)
  cmd = [sys.executable, os.path.join(ROOT, "bench", "real.py"), "--images",
         str(tmp_path / "set"), "--run-dir", str(tmp_path / "run"), "--tune", "1",
         "--peers", "blob_log", "--out", str(tmp_path / "pictures"), "--",
         "debug=smoke", "trainer.progress=false", "calibrate.rounds=1",
         "calibrate.sleep_steps=2", "calibrate.wake_steps=2", "calibrate.wake_eval_every=1",
         "calibrate.wake_batch=2", "calibrate.wake_eval_crops=2"]
  p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1200)
  assert p.returncode == 0, p.stderr[-3000:]
  out = json.loads(p.stdout.strip().splitlines()[-1])
  assert out["summary"]["tuning_images"] == ["DSC_0003.jpg"]
  # blob_log's scores, recomputed here from the parameters it reports: on both images,
  # and "rest" on the image it was not tuned on.
  images_by_name = {n: read_image(str(images / n), 3)[0] for n in NAMES}
  truth = {n: {k: labels.loc[labels["image"] == n, k].to_numpy(float) for k in "xyr"}
           for n in NAMES}
  found = {n: peers.detect("blob_log", images_by_name[n], out["blob_log"]["params"])
           for n in NAMES}
  for names, got in ((NAMES, out["blob_log"]), (NAMES[1:], out["blob_log"]["rest"])):
    want = labelled_scores([truth[n] for n in names], [found[n] for n in names])
    for k in ("precision", "recall", "f1"):
      assert got[k] == pytest.approx(want[k], abs=1e-4), (names, k)
  # The image held out of the wake fit (the second of two) is the one reconstructed: its
  # flat colour's RMSE, by hand.
  assert out["summary"]["held_out_images"] == ["DSC_0382.jpg"]
  held = images_by_name["DSC_0382.jpg"]
  flat = float(np.sqrt(np.mean((held - held.mean((0, 1))) ** 2)))
  assert out["dropamort"]["flat_colour_rmse_held_out"] == pytest.approx(flat, abs=1e-4)
  # Recall by labelled radius (octaves from 6 px) adds up to the recall over all labels.
  bins = out["dropamort"]["recall_by_label_radius"]
  assert list(bins) == ["6-12", "12-24", "24-48", "48-96", "96+"]
  found, labels = (sum(b[k] for b in bins.values()) for k in ("found", "labels"))
  assert labels > 0 and abs(found / labels - out["dropamort"]["recall"]) < 1e-3
  assert sorted(os.listdir(tmp_path / "pictures")) == ["real_best.png", "real_worst.png"]
  assert (tmp_path / "run" / "checkpoints" / "calibrated").is_dir()
