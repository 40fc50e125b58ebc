"""The original per-image model (the method dropamort grows out of), for comparison.

N droplets as flat sites (x ~ U(0, W), y ~ U(0, H), r ~ LogNormal(0, 0.5), composition ~
U(0,1)^T), decoder weights with Normal(0, 1) priors, every pixel rendered from its nearest
droplet by the dense argmin renderer, Normal(prediction, 0.05) likelihood; AutoNormal
guide, Adam(0.01).
"""

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
import optax
from numpyro.contrib.module import random_flax_module
from numpyro.infer import SVI, Trace_ELBO
from numpyro.infer.autoguide import AutoNormal

from dropamort.model.decoder import DropletOpticsModel
from dropamort.model.render import render_dense


def seed_model(image_HWC, n_droplets: int, types: int = 3):
  h, w, c = image_HWC.shape
  bg = numpyro.sample("bg", dist.Uniform(0, 1).expand([c]).to_event(1))
  with numpyro.plate("droplets", n_droplets):
    x = numpyro.sample("x", dist.Uniform(0, w))
    y = numpyro.sample("y", dist.Uniform(0, h))
    r = numpyro.sample("r", dist.LogNormal(0.0, 0.5))
    comp = numpyro.sample("composition", dist.Uniform(0, 1).expand([types]).to_event(1))
  z = jnp.zeros((1,))
  decode = random_flax_module("decoder", DropletOpticsModel(channels=c), dist.Normal(0, 1),
                              jnp.zeros((1, c)), z, z, z, jnp.zeros((1, types)))
  # The seed had no reach cut-off: every pixel takes its nearest droplet's value.
  mean = render_dense(decode, x, y, r, comp, jnp.ones(n_droplets, bool),
                      jnp.broadcast_to(bg, (h, w, c)), height=h,
                      width=w, reach=1e6)
  numpyro.sample("obs", dist.Normal(mean, 0.05).to_event(3), obs=image_HWC)


def make_seed_svi(image_HWC, n_droplets: int):
  """(svi, jitted update, initial state) for the seed model on one image."""
  guide = AutoNormal(seed_model)
  svi = SVI(seed_model, guide, optax.adam(0.01), Trace_ELBO())
  state = svi.init(jax.random.key(0), image_HWC, n_droplets)
  update = jax.jit(lambda s: svi.update(s, image_HWC, n_droplets))
  return svi, update, jax.device_put(state, jax.devices()[0])
