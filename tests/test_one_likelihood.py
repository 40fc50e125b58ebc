"""The wake's loss is the generative model's log density of the image: one likelihood.

Checked two ways on a crop with a halo and masked pixels: against a log density written
out by hand (the dense reference renderer and scipy's Normal), and against the NumPyro
model itself (``droplet_model`` with the drawn catalog substituted for its sites).
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import scipy.stats
from numpyro import handlers

from dropamort.config import ModelConfig
from dropamort.model.background import pixel_background
from dropamort.model.decoder import bind, load_params
from dropamort.model.model import decoder_module, droplet_model
from dropamort.model.prior import Prior
from dropamort.model.render import render_dense
from dropamort.model.simulate import make_simulate
from dropamort.objective import expected_log_likelihood
from dropamort.training.wake import make_wake_loss

from tests.training.helpers import sharp_posterior

SIZE = 6  # Crop side in cells.
SIGMA = 0.07


def setup(key):
  model = ModelConfig(height=32, width=32, radius_max=4.0, larger_layers=0, hard_core=False)
  halo = model.reach_cells
  side = (SIZE + 2 * halo) * model.cell
  canvas = dataclasses.replace(model, height=side, width=side, shift=False)
  params = load_params("default", 3, 3, model.decoder_hidden)
  images, catalog = make_simulate(canvas, 2)(key, params)
  a = halo * model.cell
  crops = images[:, a:a + SIZE * model.cell, a:a + SIZE * model.cell]
  crops = crops + 0.03 * jax.random.normal(jax.random.fold_in(key, 1), crops.shape)
  return model, canvas, halo, params, catalog, crops


def test_wake_loss_is_the_log_density_written_out(key):
  model, canvas, halo, params, catalog, crops = setup(key)
  weights = (jax.random.uniform(jax.random.fold_in(key, 2), crops.shape[:3]) > 0.3) * 1.0
  post = sharp_posterior(catalog)
  draw_key = jax.random.fold_in(key, 3)
  loss = make_wake_loss(model, size=SIZE)((params, jnp.log(SIGMA), None), draw_key, post,
                                          crops, weights)
  drawn = post.sample(draw_key, 1)  # What the wake drew: one catalog per image.
  decode = bind(decoder_module(canvas), params)
  a, n = halo * model.cell, SIZE * model.cell
  total = 0.0
  for b in range(crops.shape[0]):
    cat = jax.tree.map(lambda x: x[0, b:b + 1], drawn)
    centres = np.asarray(cat.centres_BYX2(canvas.cell)[0]).reshape(-1, 2)
    mean = render_dense(decode, centres[:, 0], centres[:, 1], cat.radius_BYX[0].reshape(-1),
                        cat.composition_BYXT[0].reshape(-1, 3), cat.on_BYX[0].reshape(-1),
                        pixel_background(cat.background_BYXC, canvas.cell, canvas.height,
                                         canvas.width)[0],
                        height=canvas.height, width=canvas.width, reach=canvas.reach)
    lp = scipy.stats.norm.logpdf(np.asarray(crops[b], np.float64),
                                 np.asarray(mean[a:a + n, a:a + n], np.float64), SIGMA)
    total += float(np.sum(lp * np.asarray(weights[b])[..., None]))
  np.testing.assert_allclose(-float(loss), total / crops.shape[0], rtol=1e-5)


def test_wake_loss_is_the_numpyro_models_log_density(key):
  """No halo, every pixel scored: the wake's loss is minus the log density of the image
  site of ``droplet_model`` at the catalog the wake drew, per image."""
  model, canvas, _, params, catalog, _ = setup(key)
  images, _ = make_simulate(canvas, 2)(jax.random.fold_in(key, 4), params)
  post = sharp_posterior(catalog)
  draw_key = jax.random.fold_in(key, 3)
  ll = expected_log_likelihood(params, jnp.log(SIGMA), draw_key, post, images, canvas)
  drawn = jax.tree.map(lambda x: x[0], post.sample(draw_key, 1))
  g = canvas.grid_shape[0] * canvas.grid_shape[1]
  flat = lambda x: x.reshape((2, g) + x.shape[3:])
  sites = {"on": flat(drawn.on_BYX), "offset": flat(drawn.offset_BYX2),
           "radius": flat(drawn.radius_BYX), "composition": flat(drawn.composition_BYXT)}
  prior = Prior.from_config(canvas).replace(noise_sigma=jnp.float32(SIGMA))
  with handlers.trace() as tr, handlers.seed(rng_seed=0), handlers.substitute(data=sites):
    droplet_model(canvas, prior, params, images, background=drawn.background_BYXC)
  site = tr["image"]
  want = float(site["fn"].log_prob(site["value"]).sum()) / 2
  np.testing.assert_allclose(float(ll), want, rtol=1e-5)
