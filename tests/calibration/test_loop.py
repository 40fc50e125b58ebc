import dataclasses
import json

import numpy as np
from PIL import Image

from dropamort.calibration.loop import calibrate
from dropamort.config import (CalibrateConfig, DataConfig, EncoderConfig, ModelConfig,
                              TrainConfig, TrainerConfig)
from dropamort.model.decoder import load_params
from dropamort.model.simulate import make_simulate


def test_interrupted_calibration_resumes_from_its_last_round(key, tmp_path):
  model = ModelConfig(height=32, width=32, radius_max=4.0)
  images, _ = make_simulate(dataclasses.replace(model, height=64, width=64), 2)(
      key, load_params("default", 3, 3, (32, 16, 8)))
  folder = tmp_path / "real"
  folder.mkdir()
  for i, im in enumerate(np.clip(np.asarray(images), 0, 1)):
    Image.fromarray((im * 255).astype(np.uint8)).save(folder / f"{i}.png")
  cfg = TrainConfig(
      model=model, encoder=EncoderConfig(stem=4, width=8, depth=2),
      trainer=TrainerConfig(steps=2, batch_size=4, val_every=2, val_images=4,
                            checkpoint_every=2, progress=False),
      data=DataConfig(real=str(folder)),
      calibrate=CalibrateConfig(rounds=1, sleep_steps=2, wake_steps=2, wake_batch=2,
                                wake_crop=48))
  run = tmp_path / "run"
  calibrate(cfg, str(run))  # Stops after round 1 (as if interrupted there).
  longer = dataclasses.replace(cfg, calibrate=dataclasses.replace(cfg.calibrate, rounds=2))
  result = calibrate(longer, str(run))
  rounds = [json.loads(l)["round"] for l in (run / "calibration.jsonl").read_text().splitlines()
            if json.loads(l).get("event") == "round"]
  assert rounds == [1, 2]  # Round 1 was not redone.
  assert result["step"] == 2 + 2 * 2
  assert (run / "calibrated").is_dir()
  import dropamort

  reader = dropamort.load(str(run))  # infer.py finds the calibrated model.
  assert reader.cfg.model.noise_sigma != model.noise_sigma  # The wake phase fitted it.
