"""evaluate() on a calibrated model: it reads labelled real images as inference does (the
calibration's scale, widening and edge map), so labels that are the model's own table
score perfectly."""

import dataclasses
import os

import jax
import numpy as np
import pandas as pd
import pytest
from PIL import Image

import dropamort
from dropamort.config import (CalibrateConfig, DataConfig, EncoderConfig, ModelConfig,
                              TrainConfig, TrainerConfig)
from dropamort.read_config import EvaluateRunConfig, InferConfig
from dropamort.evaluation.run import evaluate
from dropamort.model.decoder import load_params
from dropamort.model.simulate import make_simulate
from dropamort.training import trainer as trainer_module
from dropamort.training.edge import BIN_MIN
from dropamort.training.loop import train

PLANTED_EDGE = (0.8, -0.6, 3.0)  # Analysed px: in original ones (0.8, -1.2, 6.0).


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
  """One short calibration round at data.scale=0.5 on simulated images magnified twice,
  its edge map planted (too few droplets here to measure one): (run, image folder)."""
  model = ModelConfig(height=32, width=32, radius_max=4.0)
  images, _ = make_simulate(dataclasses.replace(model, height=64, width=64), 3)(
      jax.random.key(3), load_params("default", 3, 3, (64, 32, 16)))
  folder = tmp_path_factory.mktemp("real")
  for i, im in enumerate(np.clip(np.asarray(images), 0, 1)):
    big = np.kron((im * 255).astype(np.uint8), np.ones((2, 2, 1), np.uint8))
    Image.fromarray(big).save(folder / f"{i}.png")
  cfg = TrainConfig(
      model=model, encoder=EncoderConfig(stem=4, width=8, depth=2),
      trainer=TrainerConfig(steps=2, batch_size=4, val_every=2, val_images=4,
                            checkpoint_every=2, progress=False),
      data=DataConfig(real=str(folder), scale=0.5),
      calibrate=CalibrateConfig(rounds=1, sleep_steps=2, wake_steps=2, wake_batch=2,
                                wake_crop=32, min_found=0.0, outline=False, polish_steps=0))
  run = tmp_path_factory.mktemp("run")
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(trainer_module, "edge_map", lambda images, tables: (PLANTED_EDGE, BIN_MIN))
    train(cfg, str(run))
  return run, folder


def test_labels_that_are_the_models_own_table_score_perfectly(calibrated, tmp_path):
  """The labels: what inference reports for each image (original px, radii at the
  droplets' edges through the calibration's map). evaluate(), at the calibration's scale
  when none is given, matches every one at zero distance with zero radius error, and
  every 90% interval holds its label (the median)."""
  run, folder = calibrated
  reader = dropamort.load(str(run))
  edge = np.asarray(reader.predictor.prior.edge)
  np.testing.assert_allclose(edge, (0.8, -1.2, 6.0), rtol=1e-6)
  rows = []
  for name in sorted(os.listdir(folder)):
    image = np.asarray(Image.open(folder / name), np.float32) / 255
    table = reader.infer(image, InferConfig(samples=10, progress=False)).table
    rows += [(name, x, y, r) for x, y, r in table[["x", "y", "r"]].to_numpy()]
  labels = pd.DataFrame(rows, columns=["image", "x", "y", "r"])
  assert len(labels) > 0 and labels["r"].min() > 0
  labels.to_csv(tmp_path / "labels.csv", index=False)
  cfg = EvaluateRunConfig(checkpoint=str(run), dataset="droplet_images", images=str(folder),
                          annotations=str(tmp_path / "labels.csv"),
                          data_dir=str(tmp_path / "data"))  # scale: the calibration's, 0.5.
  report = evaluate(cfg, str(tmp_path / "out"), progress=False)
  det = report["detection"]
  assert report["true_droplets"] == len(labels) == report["detected_droplets"]
  assert det["f1"] == 1.0 and det["fp"] == det["fn"] == 0
  assert det["position_rmse"] == pytest.approx(0.0, abs=1e-3)
  assert det["radius_rel_error"] == pytest.approx(0.0, abs=1e-4)
  for factor in ("x", "y", "r"):
    assert report["coverage"]["90"][f"coverage_{factor}"] == 1.0
