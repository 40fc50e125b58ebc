"""The wake phase: fit the optics decoder and the noise level to real images.

Maximizes the expected log-likelihood E_{catalog ~ q(.|image)} log p(image | catalog,
decoder, sigma) over the decoder parameters and log sigma, with catalogs drawn from the
(frozen) encoder posterior. The background of each catalog comes from q as well.
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from dropamort.config import ModelConfig
from dropamort.encoder.posterior import CatalogPosterior
from dropamort.model.decoder import bind
from dropamort.model.model import decoder_module, render_catalog


@flax.struct.dataclass
class WakeState:
  step: jnp.ndarray
  decoder_params: Any
  log_sigma: jnp.ndarray
  opt_state: Any


def expected_log_likelihood(decoder_params, log_sigma, key, posterior: CatalogPosterior,
                            images_BHWC, cfg: ModelConfig, samples: int = 1, border: int = 0):
  """Monte Carlo estimate of E_q log N(image | render(catalog), sigma), per image mean.

  ``border`` px at each edge are left out: droplets centred outside a crop are not in its
  catalog but their discs reach into it.
  """
  decode = bind(decoder_module(cfg), decoder_params)
  catalogs = posterior.sample(key, samples)
  sigma = jnp.exp(log_sigma)

  def one(catalog):
    mean = render_catalog(cfg, decode, catalog)
    h, w = images_BHWC.shape[1:3]
    inner = (slice(None), slice(border, h - border), slice(border, w - border))
    resid = (images_BHWC[inner] - mean[inner]) / sigma
    return jnp.sum(-0.5 * resid**2 - log_sigma - 0.5 * jnp.log(2 * jnp.pi), axis=(1, 2, 3))

  return jnp.mean(jax.vmap(one)(catalogs))


def init_wake(decoder_params, sigma: float, tx: optax.GradientTransformation) -> WakeState:
  trainable = (decoder_params, jnp.log(jnp.asarray(sigma, jnp.float32)))
  return WakeState(step=jnp.zeros((), jnp.int32), decoder_params=decoder_params,
                   log_sigma=trainable[1], opt_state=tx.init(trainable))


def make_wake_step(cfg: ModelConfig, tx: optax.GradientTransformation, samples: int = 1,
                   border: int = 0):
  """``wake_step(state, key, posterior, images) -> (state, metrics)``, one jit.

  ``cfg.height``/``cfg.width`` must be the crop size. A non-finite objective or gradient
  leaves the state unchanged (reported in the metrics), so a bad step cannot corrupt the
  decoder.
  """

  def loss_fn(trainable, key, posterior, images):
    params, log_sigma = trainable
    return -expected_log_likelihood(params, log_sigma, key, posterior, images, cfg, samples,
                                    border)

  def wake_step(state: WakeState, key, posterior, images):
    trainable = (state.decoder_params, state.log_sigma)
    loss, grads = jax.value_and_grad(loss_fn)(trainable, jax.random.fold_in(key, state.step),
                                              posterior, images)
    updates, opt_state = tx.update(grads, state.opt_state, trainable)
    new = optax.apply_updates(trainable, updates)
    finite = jnp.isfinite(loss) & jnp.isfinite(optax.tree.norm(grads))
    keep = lambda a, b: jax.tree.map(lambda x, y: jnp.where(finite, x, y), a, b)
    (params, log_sigma), opt_state = keep(new, trainable), keep(opt_state, state.opt_state)
    state = WakeState(step=state.step + 1, decoder_params=params, log_sigma=log_sigma,
                      opt_state=opt_state)
    return state, {"loss": loss, "finite": finite, "sigma": jnp.exp(log_sigma)}

  return jax.jit(wake_step, donate_argnums=0)
