"""Calibration calibrates: "real" images from a model unlike the starting one.

The images come from a perturbed model (decoder colour and point-spread width, noise
level, size prior and background all different from the configured start); calibration
sees only the images. It must move each of them towards the truth and reconstruct the
held-out images better than the starting model does. Not all of it does yet: see the
expected failure below.
"""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from dropamort.config import (CalibrateConfig, DataConfig, EncoderConfig, ModelConfig,
                              TrainConfig, TrainerConfig)
from dropamort.model import decoder as D
from dropamort.model.simulate import make_simulate
from dropamort.training.loop import train

pytestmark = pytest.mark.slow  # About two minutes: a calibration of three rounds.

START = ModelConfig(height=32, width=32, radius_max=6.0, larger_layers=0, appearance="edge")
TRUTH = dataclasses.replace(START, radius_loc=1.2, radius_scale=0.25, noise_sigma=0.02,
                            background_low=(0.9, 0.7, 0.2), background_high=(1.1, 0.9, 0.4),
                            background_knot=0)
TRUE_PSF = 1.2  # px; the packaged decoder's is about 0.4.


def true_decoder():
  params = D.load_params("default", 3, 3, START.decoder_hidden, "edge")
  out = params["Dense_3"]
  return {**params, "edge": D.edge_raw(TRUE_PSF),
          "Dense_3": {**out, "bias": out["bias"] + jnp.array([0.4, -0.3, 0.3])}}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  folder = tmp_path_factory.mktemp("perturbed")
  canvas = dataclasses.replace(TRUTH, height=96, width=96)
  images, _ = make_simulate(canvas, 10)(jax.random.key(11), true_decoder())
  for i, im in enumerate(np.clip(np.asarray(images), 0, 1)):
    Image.fromarray((im * 255).round().astype(np.uint8)).save(folder / f"{i:02d}.png")
  cfg = TrainConfig(
      model=START, encoder=EncoderConfig(stem=8, width=16, depth=2),
      trainer=TrainerConfig(steps=300, batch_size=8, val_every=300, val_images=8,
                            checkpoint_every=300, progress=False),
      data=DataConfig(real=str(folder)),
      calibrate=CalibrateConfig(rounds=2, sleep_steps=200, wake_steps=150, wake_batch=8,
                                wake_crop=32, min_found=0.0, outline=False, polish_steps=0))
  out = tmp_path_factory.mktemp("run")
  result = train(cfg, str(out))
  records = [json.loads(line) for line in (out / "calibration.jsonl").read_text().splitlines()]
  return result, [r for r in records if r["event"] == "round"]


def test_held_out_reconstruction_improves(run):
  """Measured: held-out RMSE 0.0789 / 0.0642 / 0.0641 after rounds 0-2."""
  _, rounds = run
  first, last = rounds[0]["real_rmse"], rounds[-1]["real_rmse"]
  assert last < 0.9 * first, [r["real_rmse"] for r in rounds]


def test_the_background_moves_to_the_truth(run):
  """Measured: background_high (0.7, 0.7, 0.5) -> (0.98, 0.66, 0.30), truth (1.1, 0.9, 0.4)."""
  state = run[0]["state"]
  high = np.asarray(state.prior.background_high)
  start = np.asarray(START.background_high)
  assert np.sum((high - TRUTH.background_high) ** 2) < 0.5 * np.sum(
      (start - TRUTH.background_high) ** 2), high


@pytest.mark.xfail(strict=True, reason=(
    "issue 25, open: measured 2026-12-03, the size prior's log r location moves away from "
    "the truth (0.70 -> 0.54, truth 1.2) and so does the noise level (0.050 -> 0.076, truth "
    "0.020: misfit taken as noise); the point-spread width moves a little towards it "
    "(0.43 -> 0.56 px, truth 1.2)"))
def test_the_size_prior_noise_and_psf_move_to_the_truth(run):
  state = run[0]["state"]
  start_psf = D.edge_width(D.load_params("default", 3, 3, START.decoder_hidden, "edge"))
  psf = D.edge_width(state.decoder_params)
  sigma = float(state.prior.noise_sigma)
  loc = float(state.prior.radius_loc)
  assert abs(psf - TRUE_PSF) < 0.5 * abs(start_psf - TRUE_PSF), (start_psf, psf)
  assert abs(sigma - TRUTH.noise_sigma) < 0.5 * abs(START.noise_sigma - TRUTH.noise_sigma)
  assert abs(loc - TRUTH.radius_loc) < 0.5 * abs(START.radius_loc - TRUTH.radius_loc), loc
