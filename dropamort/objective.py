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
from numpyro.infer.util import log_density

from dropamort.config import ModelConfig
from dropamort.encoder.posterior import CatalogPosterior
from dropamort.model.catalog import Catalog, outlined
from dropamort.model.model import image_likelihood


def npe_loss(posterior: CatalogPosterior, catalog: Catalog):
  """Mean over images of -log q(true catalog | image)."""
  return -posterior.log_prob(catalog).mean()


def expected_log_likelihood(decoder_params, log_sigma, key, posterior: CatalogPosterior,
                            images_BHWC, cfg: ModelConfig, *, halo: int = 0,
                            samples: int = 1, weights_BHW=None, outline=None):
  """Monte Carlo estimate of E_q log p(image | catalog), mean per image: the log density
  of the generative model's ``image`` site (``model.image_likelihood``) at catalogs drawn
  from q.

  ``posterior`` covers the image plus ``halo`` cells on every side (``cfg`` is the size of
  that canvas), so droplets centred just outside the image still shade it; only the
  image's own pixels are scored, those whose weight is 0 masked out. ``outline`` (log s)
  scales every drawn droplet's radius to its outline (``catalog.outlined``).
  """
  catalogs = posterior.sample(key, samples)
  if outline is not None:
    catalogs = outlined(catalogs, outline)
  b, h, w = images_BHWC.shape[:3]
  a = halo * cfg.cell
  pad = [(0, 0), (a, cfg.height - h - a), (a, cfg.width - w - a)]
  inside = jnp.ones((b, h, w), bool) if weights_BHW is None else weights_BHW > 0
  mask_BHW = jnp.pad(inside, pad, constant_values=False)
  obs_BHWC = jnp.pad(images_BHWC, pad + [(0, 0)])

  def one(catalog):
    log_p, _ = log_density(image_likelihood, (cfg, decoder_params, jnp.exp(log_sigma),
                                              catalog, (), obs_BHWC, mask_BHW), {}, {})
    return log_p / b

  return jnp.mean(jax.vmap(one)(catalogs))
