"""The local renderer must equal the dense (argmin over all droplets) reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dropamort.config import ModelConfig
from dropamort.model import decoder as D
from dropamort.model.catalog import Catalog
from dropamort.model.render import render_dense, render_local


def random_catalog(key, gy, gx, *, p_on, radius_max, types=3, channels=3):
  ks = jax.random.split(key, 5)
  return Catalog(
      on_BYX=jax.random.bernoulli(ks[0], p_on, (1, gy, gx)),
      offset_BYX2=jax.random.uniform(ks[1], (1, gy, gx, 2)),
      # Radii across the whole allowed range, many at the maximum.
      radius_BYX=jnp.minimum(radius_max, jax.random.uniform(
          ks[2], (1, gy, gx), minval=0.5, maxval=radius_max * 1.5)),
      composition_BYXT=jax.random.uniform(ks[3], (1, gy, gx, types)),
      background_BC=jax.random.uniform(ks[4], (1, channels)))


def both(cfg, catalog, decode):
  local = render_local(decode, catalog, height=cfg.height, width=cfg.width, cell=cfg.cell,
                       reach=cfg.reach, reach_cells=cfg.reach_cells)[0]
  centres = np.asarray(catalog.centres_BYX2(cfg.cell)[0]).reshape(-1, 2)
  dense = render_dense(
      decode, centres[:, 0], centres[:, 1], catalog.radius_BYX[0].reshape(-1),
      catalog.composition_BYXT[0].reshape(-1, catalog.composition_BYXT.shape[-1]),
      catalog.on_BYX[0].reshape(-1), catalog.background_BC[0],
      height=cfg.height, width=cfg.width, reach=cfg.reach)
  return np.asarray(local), np.asarray(dense)


@pytest.mark.parametrize("height,width,cell,radius_max,reach,p_on", [
    (32, 32, 4, 8.0, 2.0, 0.3),    # default geometry, largest radius
    (30, 37, 4, 8.0, 2.0, 0.5),    # partial cells at the right and bottom borders
    (24, 24, 3, 5.0, 1.5, 0.9),    # crowded: many droplets compete for each pixel
    (20, 28, 8, 3.0, 3.0, 0.6),    # cells larger than droplets
    (16, 16, 4, 8.0, 2.0, 0.0),    # empty image
])
def test_local_equals_dense(key, height, width, cell, radius_max, reach, p_on):
  cfg = ModelConfig(height=height, width=width, cell=cell, radius_max=radius_max,
                    radius_min=0.5, reach=reach, density=0.01)
  for i, params in enumerate([D.load_params("default", 3, 3, (32, 16, 8)),
                              D.init_params(jax.random.fold_in(key, 7), 3, 3, (32, 16, 8))]):
    decode = D.bind(D.DropletOpticsModel(), params)
    catalog = random_catalog(jax.random.fold_in(key, i), *cfg.grid_shape, p_on=p_on,
                             radius_max=radius_max)
    local, dense = both(cfg, catalog, decode)
    assert local.shape == (height, width, 3)
    np.testing.assert_allclose(local, dense, atol=1e-5, rtol=0)
    if p_on == 0:
      np.testing.assert_allclose(local, np.broadcast_to(
          jax.nn.sigmoid(catalog.background_BC[0]), local.shape), atol=1e-6)


def test_droplet_at_image_corner_and_beyond_reach(key):
  """One hand-placed droplet: its disc is drawn around (x, y); beyond reach·r, background."""
  cfg = ModelConfig(height=16, width=16, cell=4)
  decode = D.bind(D.DropletOpticsModel(), D.load_params("default", 3, 3, (32, 16, 8)))
  on = jnp.zeros((1, 4, 4), bool).at[0, 0, 0].set(True)
  catalog = Catalog(on_BYX=on, offset_BYX2=jnp.full((1, 4, 4, 2), 0.125),  # centre (0.5, 0.5)
                    radius_BYX=jnp.full((1, 4, 4), 3.0),
                    composition_BYXT=jnp.full((1, 4, 4, 3), 0.9),
                    background_BC=jnp.full((1, 3), 0.4))
  local, dense = both(cfg, catalog, decode)
  np.testing.assert_allclose(local, dense, atol=1e-5)
  rows, cols = np.mgrid[:16, :16] + 0.5
  d = np.hypot(rows - 0.5, cols - 0.5) / 3.0
  bare = 1 / (1 + np.exp(-0.4))
  assert np.all(local[d > 2.0] == np.float32(bare))
  assert np.abs(local[d < 0.5] - bare).mean() > 0.1
