import jax
import numpy as np
import pytest

from dropamort.config import ConfigError, ModelConfig
from dropamort.model.decoder import load_params
from dropamort.model.simulate import make_simulate, simulate


@pytest.fixture(scope="module")
def params():
  return load_params("default", 3, 3, (32, 16, 8))


def test_deterministic_per_key_and_different_across_keys(key, params):
  cfg = ModelConfig(height=32, width=32)
  sim = make_simulate(cfg, 3)
  a_img, a_cat = sim(key, params)
  b_img, b_cat = sim(key, params)
  c_img, c_cat = sim(jax.random.fold_in(key, 1), params)
  np.testing.assert_array_equal(a_img, b_img)
  jax.tree.map(np.testing.assert_array_equal, a_cat, b_cat)
  assert not np.allclose(a_img, c_img)
  assert a_img.shape == (3, 32, 32, 3) and a_cat.on_BYX.shape == (3, 8, 8)
  # The images of one batch differ from each other too.
  assert not np.allclose(a_img[0], a_img[1])


def test_images_show_their_catalog(key, params):
  """With little noise, the image is darker/different where the catalog has droplets."""
  cfg = ModelConfig(height=64, width=64, noise_sigma=1e-3)
  images, catalog = make_simulate(cfg, 4)(key, params)
  bare = jax.nn.sigmoid(catalog.background_BC)[:, None, None, :]
  changed = np.abs(np.asarray(images - bare)).max(-1) > 0.02
  centres = np.asarray(catalog.centres_BYX2(cfg.cell))
  on = np.asarray(catalog.on_BYX)
  for b in range(4):
    cx, cy = centres[b][on[b]].T
    rows, cols = np.floor(cy).astype(int), np.floor(cx).astype(int)
    assert changed[b, rows, cols].mean() > 0.95  # Every droplet centre is visible.
    assert 0.02 < changed[b].mean() < 0.8


def test_margin_lets_droplets_cut_the_frame(key, params):
  cfg = ModelConfig(height=32, width=32, margin=2, noise_sigma=1e-3)
  images, catalog = make_simulate(cfg, 16)(key, params)
  bare = jax.nn.sigmoid(catalog.background_BC)[:, None, None, :]
  changed = np.abs(np.asarray(images - bare)).max(-1) > 0.02
  # Border pixels changed by droplets whose centres are outside the image occur.
  border = np.concatenate([changed[:, 0], changed[:, -1], changed[:, :, 0], changed[:, :, -1]])
  assert border.mean() > 0.05


def test_jits_once_and_has_no_python_loop(key, params):
  cfg = ModelConfig(height=16, width=16)
  sim = make_simulate(cfg, 5)
  sim(key, params)
  sim(jax.random.fold_in(key, 3), params)
  assert sim._cache_size() == 1


def test_refuses_sizes_off_the_cell_grid(key, params):
  with pytest.raises(ConfigError, match="multiples of model.cell"):
    simulate(key, params, cfg=ModelConfig(height=30, width=32), n=1)
