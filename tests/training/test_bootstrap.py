"""The LoG bootstrap: a first catalog from a classical detector, used in round 1 when the
encoder finds too few of its blobs (``calibrate.min_found``)."""

import jax
import numpy as np
import pytest
from PIL import Image
from scipy.special import expit

from dropamort.config import (CalibrateConfig, DataConfig, EncoderConfig, ModelConfig,
                              TrainConfig, TrainerConfig)
from dropamort.model.decoder import SHARP_EDGE_PX, edge_width
from dropamort.training.bootstrap import blob_posterior, log_blobs
from dropamort.training.trainer import Trainer

BG, INK = np.array([0.75, 0.7, 0.6]), np.array([0.25, 0.2, 0.3])
CELL, R_MAX = 4, 4.0


def planted(seed: int, size: int = 64):
  """An image with one dark anti-aliased disc (r 2-3.5 px) in each 16-px block on a flat
  background, and the discs' (x, y, r)."""
  rng = np.random.default_rng(seed)
  blocks = np.arange(0, size, 16)
  x = np.array([bx + rng.uniform(6, 10) for _ in blocks for bx in blocks])
  y = np.array([by + rng.uniform(6, 10) for by in blocks for _ in blocks])
  r = rng.uniform(2.0, 3.5, x.size)
  yy, xx = np.mgrid[0:size, 0:size] + 0.5  # Pixel centres.
  image = np.ones((size, size, 3)) * BG
  for xi, yi, ri in zip(x, y, r):
    a = np.clip(ri + 0.5 - np.hypot(xx - xi, yy - yi), 0, 1)[..., None]
    image = image * (1 - a) + a * INK
  return image.astype(np.float32), x, y, r


def _inside_a_disc(px, py, x, y, r):
  return np.array([np.any(np.hypot(x - u, y - v) < r) for u, v in zip(px, py)])


def test_log_blobs_find_the_planted_discs_at_their_centres_and_radii():
  image, x, y, r = planted(0)
  bx, by, br = log_blobs(image, R_MAX)
  d = np.hypot(bx[None] - x[:, None], by[None] - y[:, None])  # (planted, found)
  j = d.argmin(1)
  # Every disc, its centre to the pixel (LoG's maxima lie on pixel centres).
  np.testing.assert_allclose(bx[j], x, atol=0.5)
  np.testing.assert_allclose(by[j], y, atol=0.5)
  np.testing.assert_allclose(br[j], r, rtol=0.15)  # r = sigma·sqrt(2) is the disc's radius.
  assert np.all(_inside_a_disc(bx, by, x, y, r))  # Nothing found on the background.


def test_blob_posterior_puts_the_discs_in_their_cells_on_the_image_background():
  image, x, y, r = planted(1)
  post = jax.tree.map(np.asarray, blob_posterior(image, CELL, R_MAX, types=3))
  on = post.p_BYX[0] > 0.5
  row, col = (y // CELL).astype(int), (x // CELL).astype(int)
  assert np.all(on[row, col])
  off = expit(post.offset_loc_BYX2[0, row, col])
  np.testing.assert_allclose((col + off[:, 0]) * CELL, x, atol=0.5)
  np.testing.assert_allclose((row + off[:, 1]) * CELL, y, atol=0.5)
  np.testing.assert_allclose(np.exp(post.logr_loc_BYX[0, row, col]), r, rtol=0.15)
  rows, cols = np.nonzero(on)  # Any other cell that is on holds a fragment of a disc.
  centres = expit(post.offset_loc_BYX2[0, rows, cols])
  assert np.all(_inside_a_disc((cols + centres[:, 0]) * CELL, (rows + centres[:, 1]) * CELL,
                               x, y, r))
  # The background is read around the droplets (the cells' upper percentile): the flat
  # colour, everywhere.
  np.testing.assert_allclose(expit(post.bg_loc_BYXC[0]), np.broadcast_to(BG, (16, 16, 3)),
                             atol=0.01)


@pytest.fixture(scope="module")
def planted_cfg(tmp_path_factory):
  folder = tmp_path_factory.mktemp("planted")
  for i in range(3):
    Image.fromarray((planted(10 + i)[0] * 255).round().astype(np.uint8)).save(folder / f"{i}.png")
  return TrainConfig(
      model=ModelConfig(height=32, width=32, radius_max=R_MAX),
      encoder=EncoderConfig(stem=4, width=8, depth=2),
      trainer=TrainerConfig(steps=2, batch_size=4, val_every=2, val_images=4,
                            checkpoint_every=2, progress=False),
      data=DataConfig(real=str(folder)),
      calibrate=CalibrateConfig(rounds=1, sleep_steps=2, wake_steps=2, wake_batch=2,
                                wake_crop=32, min_found=0.25, outline=True, polish_steps=0))


def _seeing(state, on_logit: float):
  """``state`` with an encoder whose every cell's on-logit is ``on_logit``: -30 finds no
  droplet, +30 one in every cell."""
  params = jax.tree.map(np.array, state.params)
  head = params["Conv_5"]  # The droplet heads; channel 0 is the on-logit.
  head["kernel"][..., 0], head["bias"][0] = 0.0, on_logit
  return state.replace(params=params)


def test_an_encoder_that_finds_too_few_blobs_is_replaced_by_them_in_round_one(planted_cfg,
                                                                             tmp_path):
  """An encoder that finds fewer than ``min_found`` of the LoG blobs: round 1's wake reads
  the LoG catalog (on the fitted images every planted disc, at its centre and radius),
  and its decoder's edge is not made sharp for the outline search (LoG radii follow no
  outline convention). One that finds more keeps its own reads and the edge is sharp."""
  trainer = Trainer(planted_cfg, str(tmp_path))
  fresh, _ = trainer.initial_state()
  fresh = fresh.replace(round=jax.numpy.int32(1))
  blind = trainer._start_wake(_seeing(fresh, -30.0))
  assert bool(blind.bootstrap)
  assert edge_width(blind.decoder_params) != pytest.approx(SHARP_EDGE_PX)
  # The held-out image is the last (data.real.holdout_indices): the fitted ones are the first.
  fitted = trainer.real.fitted
  for i, (image, levels) in enumerate(zip(fitted, trainer._read(blind, fitted))):
    drawn, x, y, r = planted(10 + i)
    np.testing.assert_allclose(image, drawn, atol=0.5 / 255)
    post = jax.tree.map(np.asarray, levels[0].posterior)
    row, col = (y // CELL).astype(int), (x // CELL).astype(int)
    assert np.all(post.p_BYX[0][row, col] > 0.5)
    off = expit(post.offset_loc_BYX2[0, row, col])
    np.testing.assert_allclose((col + off[:, 0]) * CELL, x, atol=0.5)
    np.testing.assert_allclose(np.exp(post.logr_loc_BYX[0, row, col]), r, rtol=0.15)
  seeing = trainer._start_wake(_seeing(fresh, 30.0))
  trainer.close()
  assert not bool(seeing.bootstrap)
  assert edge_width(seeing.decoder_params) == pytest.approx(SHARP_EDGE_PX)
