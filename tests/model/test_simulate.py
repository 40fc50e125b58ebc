import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dropamort.config import ConfigError, ModelConfig
from dropamort.model.background import pixel_background
from dropamort.model.decoder import load_params
from dropamort.model.prior import Prior
from dropamort.model.simulate import make_simulate, simulate


@pytest.fixture(scope="module")
def params():
  return load_params("default", 3, 3, (64, 32, 16))


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
  cfg = ModelConfig(height=64, width=64, noise_sigma=1e-3, larger_layers=0)
  images, catalog = make_simulate(cfg, 4)(key, params)
  bare = jax.nn.sigmoid(pixel_background(catalog.background_BYXC, cfg.cell, 64, 64))
  changed = np.abs(np.asarray(images - bare)).max(-1) > 0.02
  centres = np.asarray(catalog.centres_BYX2(cfg.cell))
  on = np.asarray(catalog.on_BYX)
  for b in range(4):
    cx, cy = centres[b][on[b]].T
    rows, cols = np.floor(cy).astype(int), np.floor(cx).astype(int)
    assert changed[b, rows, cols].mean() > 0.95  # Every droplet centre is visible.
    assert 0.02 < changed[b].mean() < 0.8


def test_margin_lets_droplets_cut_the_frame(key, params):
  cfg = ModelConfig(height=32, width=32, margin=2, noise_sigma=1e-3, larger_layers=0)
  images, catalog = make_simulate(cfg, 16)(key, params)
  bare = jax.nn.sigmoid(pixel_background(catalog.background_BYXC, cfg.cell, 32, 32))
  changed = np.abs(np.asarray(images - bare)).max(-1) > 0.02
  # Border pixels changed by droplets whose centres are outside the image occur.
  border = np.concatenate([changed[:, 0], changed[:, -1], changed[:, :, 0], changed[:, :, -1]])
  assert border.mean() > 0.05


def test_jits_once_and_a_new_prior_does_not_recompile(key, params):
  cfg = ModelConfig(height=16, width=16)
  sim = make_simulate(cfg, 5)
  prior = Prior.from_config(cfg)
  sim(key, params, prior)
  sim(jax.random.fold_in(key, 3), params, prior.replace(density=prior.density * 2))
  assert sim._cache_size() == 1


def test_refuses_sizes_off_the_cell_grid(key, params):
  cfg = ModelConfig(height=30, width=32)
  with pytest.raises(ConfigError, match="multiples of model.cell"):
    simulate(key, params, Prior.from_config(cfg), cfg=cfg, n=1)


def test_rebin_moves_droplets_into_the_shifted_crop(key):
  """Against a direct computation on flat tables: every canvas droplet whose centre lies
  in the shifted crop appears at its position minus the crop origin, except those the
  returned count says could not be represented."""
  import jax.numpy as jnp
  from numpyro import handlers

  from dropamort.model.catalog import to_table
  from dropamort.model.prior import Prior, sample_catalog
  from dropamort.model.simulate import rebin

  cfg = ModelConfig(height=32, width=40, density=0.05, radius_loc=0.0, hard_core=False)
  m, (gy, gx) = 2, cfg.grid_shape
  canvas = ModelConfig(height=32 + 16, width=40 + 16, density=0.05, hard_core=False)
  with handlers.seed(rng_seed=key):
    cat = sample_catalog(canvas, Prior.from_config(canvas), 6)
  shift = jax.random.randint(jax.random.fold_in(key, 1), (6, 2), 0, 4)
  crop, lost = rebin(cat, shift, margin=m, grid=(gy, gx), cell=4)
  for b, (full, got) in enumerate(zip(to_table(cat, 4), to_table(crop, 4))):
    ox, oy = m * 4 + int(shift[b, 0]), m * 4 + int(shift[b, 1])
    x, y = full["x"] - ox, full["y"] - oy
    inside = (x >= 0) & (x < 40) & (y >= 0) & (y < 32)
    want = np.stack([x[inside], y[inside]], -1)
    have = np.stack([got["x"], got["y"]], -1)
    gap = np.abs(have[:, None] - want[None]).max(-1).min(-1)
    assert np.all(gap < 1e-4)  # Every crop droplet is a canvas droplet, moved.
    assert len(want) - len(have) == int(lost[b])
  assert int(lost.sum()) > 0  # This crowded prior does collide; the check has teeth.
  # No shift: the plain crop.
  crop0, lost0 = rebin(cat, jnp.zeros((6, 2), jnp.int32), margin=m, grid=(gy, gx), cell=4)
  jax.tree.map(np.testing.assert_array_equal, crop0, cat.crop(m, m, gy, gx))
  assert int(lost0.sum()) == 0


def test_grid_recall_ceiling_at_the_default_prior(key):
  """Droplets the cell grid cannot hold after a shifted crop: under 2% at the default."""
  from numpyro import handlers

  from dropamort.model.prior import Prior, sample_catalog
  from dropamort.model.simulate import canvas_config, rebin

  cfg = ModelConfig()
  with handlers.seed(rng_seed=key):
    cat = sample_catalog(canvas_config(cfg), Prior.from_config(cfg), 100)
  shift = jax.random.randint(key, (100, 2), 0, cfg.cell)
  crop, lost = rebin(cat, shift, margin=cfg.margin, grid=cfg.grid_shape, cell=cfg.cell)
  assert int(lost.sum()) / (int(lost.sum()) + int(crop.on_BYX.sum())) < 0.02


def test_the_crops_background_is_the_canvas_field_at_its_cells(key, params):
  """With a sub-cell shift the crop's per-cell background is the canvas field read at the
  crop's cell centres: rendering it again gives the image's bare background."""
  cfg = ModelConfig(height=32, width=32, noise_sigma=1e-4, background_sd=0.5, density=1e-6,
                    larger_layers=0, background_knot=16)
  images, catalog = make_simulate(cfg, 8)(key, params)
  bare = jax.nn.sigmoid(pixel_background(catalog.background_BYXC, cfg.cell, 32, 32))
  assert float(jnp.std(catalog.background_BYXC)) > 0.1
  # Inside the outermost cell centres (beyond them the crop's field extends flat, the
  # canvas's keeps its slope); the field is interpolated twice (knots -> canvas cells ->
  # shifted crop cells), which rounds its kinks: hence the tolerance (sd 0.5 is a strong field).
  inner = (slice(None), slice(2, -2), slice(2, -2))
  np.testing.assert_allclose(np.asarray(images)[inner], np.asarray(bare)[inner], atol=0.03)


def test_larger_droplets_are_drawn_but_not_catalogued(key, params):
  cfg = ModelConfig(height=64, width=64, larger_layers=1, larger_fraction=0.5)
  images, catalog, larger = make_simulate(cfg, 8, with_larger=True)(key, params)
  centres, radius, on = (np.asarray(a) for a in larger[0])
  assert on.sum() >= 3 and np.all((radius[on] >= 8) & (radius[on] <= 32))
  assert np.all((centres[on] >= 0) & (centres[on] < 64))
  # No band droplet overlaps a larger one (hard core across layers).
  band = np.asarray(catalog.centres_BYX2(cfg.cell))
  band_on, band_r = np.asarray(catalog.on_BYX), np.asarray(catalog.radius_BYX)
  for b in range(8):
    small = band[b][band_on[b]]
    big = centres[b][on[b]]
    if len(small) and len(big):
      d = np.hypot(*(small[:, None, :] - big[None]).transpose(2, 0, 1))
      assert np.all(d >= band_r[b][band_on[b]][:, None] + radius[b][on[b]][None] - 1e-3)
