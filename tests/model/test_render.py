"""The local renderer must equal the dense (argmin over all droplets) reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dropamort.config import ModelConfig
from dropamort.model import decoder as D
from dropamort.model.background import pixel_background
from dropamort.model.catalog import Catalog
from dropamort.model.render import Layer, render_dense, render_layers, render_local


def random_catalog(key, gy, gx, *, p_on, radius_max, types=3, channels=3):
  ks = jax.random.split(key, 5)
  return Catalog(
      on_BYX=jax.random.bernoulli(ks[0], p_on, (1, gy, gx)),
      offset_BYX2=jax.random.uniform(ks[1], (1, gy, gx, 2)),
      # Radii across the whole allowed range, many at the maximum.
      radius_BYX=jnp.minimum(radius_max, jax.random.uniform(
          ks[2], (1, gy, gx), minval=0.5, maxval=radius_max * 1.5)),
      composition_BYXT=jax.random.uniform(ks[3], (1, gy, gx, types)),
      background_BYXC=jax.random.uniform(ks[4], (1, gy, gx, channels)))


def both(cfg, catalog, decode):
  local = render_local(decode, catalog, height=cfg.height, width=cfg.width, cell=cfg.cell,
                       reach=cfg.reach, reach_cells=cfg.reach_cells)[0]
  centres = np.asarray(catalog.centres_BYX2(cfg.cell)[0]).reshape(-1, 2)
  dense = render_dense(
      decode, centres[:, 0], centres[:, 1], catalog.radius_BYX[0].reshape(-1),
      catalog.composition_BYXT[0].reshape(-1, catalog.composition_BYXT.shape[-1]),
      catalog.on_BYX[0].reshape(-1),
      pixel_background(catalog.background_BYXC, cfg.cell, cfg.height, cfg.width)[0],
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
  for i, params in enumerate([D.load_params("default", 3, 3, (64, 32, 16)),
                              D.init_params(jax.random.fold_in(key, 7), 3, 3, (64, 32, 16))]):
    decode = D.bind(D.DropletOpticsModel(), params)
    catalog = random_catalog(jax.random.fold_in(key, i), *cfg.grid_shape, p_on=p_on,
                             radius_max=radius_max)
    local, dense = both(cfg, catalog, decode)
    assert local.shape == (height, width, 3)
    np.testing.assert_allclose(local, dense, atol=1e-5, rtol=0)
    if p_on == 0:
      bg = pixel_background(catalog.background_BYXC, cfg.cell, cfg.height, cfg.width)[0]
      np.testing.assert_allclose(local, jax.nn.sigmoid(bg), atol=1e-6)


def test_droplet_at_image_corner_and_beyond_reach(key):
  """One hand-placed droplet: its disc is drawn around (x, y); beyond reach·r, background."""
  cfg = ModelConfig(height=16, width=16, cell=4)
  decode = D.bind(D.DropletOpticsModel(), D.load_params("default", 3, 3, (64, 32, 16)))
  on = jnp.zeros((1, 4, 4), bool).at[0, 0, 0].set(True)
  catalog = Catalog(on_BYX=on, offset_BYX2=jnp.full((1, 4, 4, 2), 0.125),  # centre (0.5, 0.5)
                    radius_BYX=jnp.full((1, 4, 4), 3.0),
                    composition_BYXT=jnp.full((1, 4, 4, 3), 0.9),
                    background_BYXC=jnp.full((1, 4, 4, 3), 0.4))
  local, dense = both(cfg, catalog, decode)
  np.testing.assert_allclose(local, dense, atol=1e-5)
  rows, cols = np.mgrid[:16, :16] + 0.5
  d = np.hypot(rows - 0.5, cols - 0.5) / 3.0
  bare = 1 / (1 + np.exp(-0.4))
  assert np.all(local[d > 2.0] == np.float32(bare))
  assert np.abs(local[d < 0.5] - bare).mean() > 0.1


def test_layers_render_like_one_dense_scene(key):
  """Three scale layers (cells 4, 16, 64; radii up to 8, 32, 128 px) against the dense
  rule over all their droplets, the decoder seeing r / r_scale."""
  decode = D.bind(D.DropletOpticsModel(), D.load_params("default", 3, 3, (64, 32, 16)))
  h, w = 72, 100
  specs = [(4, 8.0, 1.0, 0.3), (16, 32.0, 4.0, 0.4), (64, 128.0, 16.0, 0.5)]
  layers, flat = [], []
  for i, (cell, r_max, r_scale, p_on) in enumerate(specs):
    gy, gx = -(-h // cell), -(-w // cell)
    cat = random_catalog(jax.random.fold_in(key, i), gy, gx, p_on=p_on, radius_max=r_max)
    layers.append(Layer(cat, cell, int(np.ceil(2.0 * r_max / cell)), r_scale))
    c = np.asarray(cat.centres_BYX2(cell)[0]).reshape(-1, 2)
    flat.append((c[:, 0], c[:, 1], np.asarray(cat.radius_BYX[0]).ravel(),
                 np.asarray(cat.composition_BYXT[0]).reshape(-1, 3),
                 np.asarray(cat.on_BYX[0]).ravel(),
                 np.asarray(cat.radius_BYX[0]).ravel() / r_scale))
  got = render_layers(decode, layers, height=h, width=w, reach=2.0)[0]
  cat = lambda k: np.concatenate([f[k] for f in flat])
  bg = pixel_background(layers[0].catalog.background_BYXC, 4, h, w)[0]
  want = render_dense(decode, cat(0), cat(1), cat(2), cat(3), cat(4), bg, height=h, width=w,
                      reach=2.0, rin_N=cat(5))
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5)
  # The larger layers do change the picture.
  alone = render_layers(decode, layers[:1], height=h, width=w, reach=2.0)[0]
  assert np.abs(np.asarray(alone) - np.asarray(got)).max() > 0.1


def test_a_window_is_rendered_as_the_whole_render_shows_it(key):
  """The wake renders only its crop inside the halo (``origin``): the window equals that
  part of the whole render, with two scale layers (cells 4 and 16), and the halo's
  droplets shade it."""
  decode = D.bind(D.DropletOpticsModel(), D.load_params("default", 3, 3, (64, 32, 16)))
  h, w, origin, height, width = 96, 112, 16, 32, 40
  layers = [Layer(random_catalog(jax.random.fold_in(key, 0), h // 4, w // 4, p_on=0.5,
                                 radius_max=8.0), 4, 4),
            Layer(random_catalog(jax.random.fold_in(key, 1), h // 16, w // 16, p_on=0.5,
                                 radius_max=32.0), 16, 4, 4.0)]
  whole = np.asarray(render_layers(decode, layers, height=h, width=w, reach=2.0))
  got = np.asarray(render_layers(decode, layers, height=height, width=width, reach=2.0,
                                 origin=origin))
  np.testing.assert_allclose(got, whole[:, origin:origin + height, origin:origin + width],
                             atol=1e-6, rtol=0)
  with pytest.raises(ValueError, match="whole number"):
    render_layers(decode, layers, height=8, width=8, reach=2.0, origin=8)  # Not 16 px.
