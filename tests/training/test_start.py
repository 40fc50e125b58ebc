"""The packaged start (``training.start``) is round 0 of today's default calibration."""

import dataclasses

import jax

from dropamort.config import DataConfig, TrainConfig
from dropamort.metrics import detection_metrics
from dropamort.model.catalog import to_table
from dropamort.model.model import configured_decoder_params
from dropamort.model.simulate import make_simulate
from dropamort.training import start
from dropamort.encoder.cnn import make_encoder
from dropamort.training.state import (SLEEP, init_state, make_optimizer, make_wake_optimizer,
                                      total_steps)
from dropamort.training.step import make_posterior_fn

# The start's validation F1 at step 3000 was 0.964 (128 images, condensation run 13).
MIN_F1 = 0.85


def default_calibration():
  return TrainConfig(data=DataConfig(real="any folder"))


def test_the_packaged_start_applies_to_the_default_calibration():
  """Fails when a default that round 0 depends on changed without rebuilding the start
  (``python scripts/build_start_model.py``)."""
  cfg = default_calibration()
  assert start.differences(cfg) == []
  fresh = init_state(jax.random.key(0), cfg, make_optimizer(cfg.optim, total_steps(cfg)),
                     make_wake_optimizer(cfg.calibrate.wake_lr))
  state = start.restore(fresh)
  assert state is not None, "the default decoder changed since the start was made"
  assert (int(state.step), int(state.round), int(state.stage)) == (cfg.trainer.steps, 0, SLEEP)
  # Another seed is another round 0.
  other = dataclasses.replace(cfg, trainer=dataclasses.replace(cfg.trainer, seed=7))
  assert start.differences(other) == ["trainer.seed"]


def test_the_packaged_encoder_reads_todays_simulations():
  """A tripwire for simulator changes that the configuration does not show: the start's
  encoder still finds the droplets of images simulated by the current code."""
  cfg = default_calibration()
  m = cfg.model
  fresh = init_state(jax.random.key(0), cfg, make_optimizer(cfg.optim, total_steps(cfg)),
                     make_wake_optimizer(cfg.calibrate.wake_lr))
  state = start.restore(fresh)
  decoder = configured_decoder_params(m)
  images, catalog = make_simulate(m, 8)(jax.random.key(123), decoder)
  post = make_posterior_fn(make_encoder(cfg.encoder, m))(state.params, images)
  f1 = detection_metrics(to_table(catalog, m.cell), post.to_table(m.cell, 0.5))["f1"]
  assert f1 >= MIN_F1
  # An untrained encoder does not (the check has teeth).
  post0 = make_posterior_fn(make_encoder(cfg.encoder, m))(fresh.params, images)
  assert detection_metrics(to_table(catalog, m.cell), post0.to_table(m.cell, 0.5))["f1"] < 0.5
