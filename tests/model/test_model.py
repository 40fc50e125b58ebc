import math

import jax.numpy as jnp
import numpy as np
import scipy.stats
from numpyro import handlers
from numpyro.infer.util import log_density

from dropamort.config import ModelConfig
from dropamort.model.decoder import load_params
from dropamort.model.model import droplet_model
from dropamort.model.prior import Prior


def trace(key, cfg, params, images=None, batch=2, prior=None):
  prior = Prior.from_config(cfg) if prior is None else prior
  with handlers.seed(rng_seed=key), handlers.trace() as tr:
    droplet_model(cfg, prior, params, images, batch)
  return tr


def test_sites_and_shapes(key):
  cfg = ModelConfig(height=16, width=24, larger_layers=0, background_knot=0)
  params = load_params("default", 3, 3, (64, 32, 16))
  tr = trace(key, cfg, params)
  gy, gx = cfg.grid_shape
  g = gy * gx
  shapes = {k: v["value"].shape for k, v in tr.items() if v["type"] in ("sample",
                                                                          "deterministic")}
  assert shapes == {"background": (2, 3), "on": (2, g), "offset": (2, g, 2), "radius": (2, g),
                    "composition": (2, g, 3), "priority": (2, g), "kept": (2, gy, gx),
                    "image": (2, 16, 24, 3)}
  assert {f.name for f in tr["on"]["cond_indep_stack"]} == {"images", "cells"}
  assert {f.name for f in tr["background"]["cond_indep_stack"]} == {"images", "channels"}
  assert not any(k.startswith("decoder") for k in tr)


def test_larger_layers_and_the_background_field_have_their_sites(key):
  cfg = ModelConfig(height=64, width=96, larger_layers=2, background_knot=32)
  tr = trace(key, cfg, load_params("default", 3, 3, (64, 32, 16)))
  shapes = {k: v["value"].shape for k, v in tr.items() if v["type"] == "sample"}
  assert shapes["background_field"] == (2, 3, 4, 3)  # Knots every 32 px over 64 × 96.
  # Each larger layer doubles the cell (4 px in the band): 8 px, then 16 px.
  assert shapes["larger1_on"] == (2, 8 * 12) and shapes["larger1_radius"] == (2, 96)
  assert shapes["larger2_on"] == (2, 4 * 6)
  r1 = np.asarray(tr["larger1_radius"]["value"])
  r2 = np.asarray(tr["larger2_radius"]["value"])
  assert r1.min() >= 8.0 and r1.max() <= 16.0  # Layer 1 holds radii 8–16 px,
  assert r2.min() >= 16.0 and r2.max() <= 32.0  # layer 2 radii 16–32 px.


def test_random_decoder_has_normal_priors(key):
  cfg = ModelConfig(height=8, width=8)
  tr = trace(key, cfg, None, batch=1)
  dec = {k: v for k, v in tr.items() if k.startswith("decoder")}
  assert "decoder/Dense_0.kernel" in dec and dec["decoder/Dense_0.kernel"]["value"].shape == (
      10, 64)
  for site in ("decoder/Dense_1.kernel", "decoder/LayerNorm_0.scale"):
    value, fn = dec[site]["value"], dec[site]["fn"]
    np.testing.assert_allclose(float(fn.log_prob(value).sum()),
                               scipy.stats.norm.logpdf(np.asarray(value)).sum(), rtol=1e-5)


def test_joint_density_equals_the_sum_of_its_factors(key):
  """log p(latents, image) against scipy, factor by factor; the noise level and the
  prior's numbers are the ``Prior`` data passed in, not the configuration's."""
  cfg = ModelConfig(height=8, width=8, hard_core=False, larger_layers=0)
  prior = Prior.from_config(cfg).replace(noise_sigma=jnp.float32(0.07),
                                         radius_loc=jnp.float32(1.2),
                                         density=jnp.float32(0.03))
  params = load_params("default", 3, 3, (64, 32, 16))
  tr = trace(key, cfg, params, batch=1, prior=prior)
  latents = {k: v["value"] for k, v in tr.items() if v["type"] == "sample" and k != "image"}
  image = tr["image"]["value"] + 0.01
  cond = handlers.condition(droplet_model, latents)
  with handlers.trace() as tr2:
    cond(cfg, prior, params, image)
  mean = np.asarray(tr2["image"]["fn"].base_dist.loc)
  want_image = scipy.stats.norm(mean, 0.07).logpdf(np.asarray(image)).sum()
  np.testing.assert_allclose(float(tr2["image"]["fn"].log_prob(image).sum()), want_image,
                             rtol=1e-4)
  on, r = np.asarray(latents["on"]), np.asarray(latents["radius"])
  p = 0.03 * cfg.cell**2
  a, b = (0.0 - 1.2) / 0.5, (math.log(8.0) - 1.2) / 0.5
  want = (want_image
          + np.sum(-np.log(np.subtract(cfg.background_high, cfg.background_low)))
          + np.sum(on * np.log(p) + (1 - on) * np.log1p(-p))
          + np.sum(scipy.stats.truncnorm(a, b, loc=1.2, scale=0.5).logpdf(np.log(r)) - np.log(r))
          + np.sum(scipy.stats.norm(0, cfg.background_sd).logpdf(
              np.asarray(latents["background_field"]))))
  # Offsets and compositions are U(0, 1): they add nothing.
  lp, _ = log_density(droplet_model, (cfg, prior, params, image), {}, latents)
  np.testing.assert_allclose(float(lp), want, rtol=1e-5)
