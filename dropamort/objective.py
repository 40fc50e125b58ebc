"""Training objectives.

- Sleep / NPE (forward KL): E_{(catalog, image) ~ model} -log q(catalog | image). Minimizing
  it over simulated pairs fits q to the model's posterior (Papamakarios & Murray 2016;
  Ambrogioni et al. 2019): the loss is the expected negative log density of the true
  catalog, summed over cells (continuous factors only where a droplet is on) and the
  per-image background.
- Wake: the expected log-likelihood of real images under catalogs drawn from q, a function
  of the decoder parameters and the noise level (the encoder is held fixed).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from dropamort.config import ModelConfig
from dropamort.encoder.posterior import CatalogPosterior
from dropamort.model.catalog import Catalog, outlined
from dropamort.model.decoder import bind
from dropamort.model.model import decoder_module, render_catalog


def npe_loss(posterior: CatalogPosterior, catalog: Catalog):
  """Mean over images of -log q(true catalog | image)."""
  return -posterior.log_prob(catalog).mean()


def expected_log_likelihood(decoder_params, log_sigma, key, posterior: CatalogPosterior,
                            images_BHWC, cfg: ModelConfig, *, halo: int = 0,
                            samples: int = 1, weights_BHW=None, outline=None):
  """Monte Carlo estimate of E_q log N(image | render(catalog), sigma), mean per image:
  the log density of the model's ``image`` site (``model.image_likelihood``) with the
  unscored pixels masked, written out (tests/test_one_likelihood.py holds the two equal;
  computing it through ``numpyro.infer.util.log_density`` changed float rounding enough
  to move the outline search's discrete choice in tests/training/test_outline.py).

  ``posterior`` covers the image plus ``halo`` cells on every side (``cfg`` is the size of
  that canvas), so droplets centred just outside the image still shade it; only the
  image's own pixels are scored, each with its weight (0 leaves a pixel out). ``outline``
  (log s) scales every drawn droplet's radius to its outline (``catalog.outlined``).
  """
  decode = bind(decoder_module(cfg), decoder_params)
  catalogs = posterior.sample(key, samples)
  if outline is not None:
    catalogs = outlined(catalogs, outline)
  sigma = jnp.exp(log_sigma)
  h, w = images_BHWC.shape[1:3]
  a = halo * cfg.cell

  weights = 1.0 if weights_BHW is None else weights_BHW[..., None]

  def one(catalog):
    mean = render_catalog(cfg, decode, catalog, window=(a, h, w))  # The halo unrendered.
    resid = (images_BHWC - mean) / sigma
    ll = -0.5 * resid**2 - log_sigma - 0.5 * jnp.log(2 * jnp.pi)
    return jnp.sum(weights * ll, axis=(1, 2, 3))

  return jnp.mean(jax.vmap(one)(catalogs))
