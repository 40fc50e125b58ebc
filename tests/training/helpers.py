"""Helpers shared by the training tests."""

import jax.numpy as jnp
from jax.scipy.special import logit

from dropamort.encoder.posterior import CatalogPosterior


def sleep_setup(cfg, key, steps: int, mesh=None):
  """(fresh state, jitted sleep step) of ``cfg`` with a schedule of ``steps``."""
  from dropamort.encoder.cnn import make_encoder
  from dropamort.training.state import init_state, make_optimizer, make_wake_optimizer
  from dropamort.training.step import make_sleep_step

  tx = make_optimizer(cfg.optim, steps)
  state = init_state(key, cfg, tx, make_wake_optimizer(cfg.calibrate.wake_lr))
  step = make_sleep_step(cfg.model, make_encoder(cfg.encoder, cfg.model), tx,
                         cfg.trainer.batch_size, mesh)
  return state, step


def sharp_posterior(catalog):
  """A posterior concentrated on the true catalog (isolates the wake stage)."""
  tiny = lambda a: jnp.full(a.shape, 1e-3)
  clip = lambda a: jnp.clip(a, 1e-4, 1 - 1e-4)
  return CatalogPosterior(
      on_logit_BYX=jnp.where(catalog.on_BYX, 30.0, -30.0),
      offset_loc_BYX2=logit(clip(catalog.offset_BYX2)), offset_scale_BYX2=tiny(
          catalog.offset_BYX2),
      logr_loc_BYX=jnp.log(catalog.radius_BYX), logr_scale_BYX=tiny(catalog.radius_BYX),
      comp_loc_BYXT=logit(clip(catalog.composition_BYXT)),
      comp_scale_BYXT=tiny(catalog.composition_BYXT),
      bg_loc_BYXC=catalog.background_BYXC, bg_scale_BYXC=tiny(catalog.background_BYXC))
