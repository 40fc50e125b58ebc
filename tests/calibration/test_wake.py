
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.scipy.special import logit

from dropamort.calibration.wake import init_wake, make_wake_step
from dropamort.config import ModelConfig
from dropamort.encoder.posterior import CatalogPosterior
from dropamort.model.decoder import bind, load_params
from dropamort.model.model import decoder_module, render_catalog
from dropamort.model.simulate import make_simulate


def sharp_posterior(catalog):
  """A posterior concentrated on the true catalog (isolates the wake phase)."""
  tiny = lambda a: jnp.full(a.shape, 1e-3)
  clip = lambda a: jnp.clip(a, 1e-4, 1 - 1e-4)
  return CatalogPosterior(
      on_logit_BYX=jnp.where(catalog.on_BYX, 30.0, -30.0),
      offset_loc_BYX2=logit(clip(catalog.offset_BYX2)), offset_scale_BYX2=tiny(
          catalog.offset_BYX2),
      logr_loc_BYX=jnp.log(catalog.radius_BYX), logr_scale_BYX=tiny(catalog.radius_BYX),
      comp_loc_BYXT=logit(clip(catalog.composition_BYXT)),
      comp_scale_BYXT=tiny(catalog.composition_BYXT),
      bg_loc_BC=catalog.background_BC, bg_scale_BC=tiny(catalog.background_BC))


def test_wake_recovers_a_perturbed_decoder(key):
  cfg = ModelConfig(height=32, width=32, noise_sigma=0.02, shift=False)
  true_params = load_params("default", 3, 3, (32, 16, 8))
  images, catalog = make_simulate(cfg, 32)(key, true_params)
  noise = jax.tree.map(lambda a: 0.4 * jax.random.normal(jax.random.fold_in(key, a.size),
                                                         a.shape), true_params)
  start = jax.tree.map(jnp.add, true_params, noise)
  render = lambda p: render_catalog(cfg, bind(decoder_module(cfg), p), catalog)
  truth = render(true_params)
  rmse = lambda p: float(jnp.sqrt(jnp.mean((render(p) - truth) ** 2)))
  rmse_start = rmse(start)
  tx = optax.adam(3e-3)
  state = init_wake(start, 0.05, tx)
  step = make_wake_step(cfg, tx)
  post = sharp_posterior(catalog)
  # The catalog misses droplets centred in the margin; fit away from the borders only
  # by comparing renders of the same catalog (what the decoder controls).
  for _ in range(300):
    state, m = step(state, key, post, images)
  assert bool(m["finite"])
  rmse_end = rmse(state.decoder_params)
  assert rmse_end < 0.5 * rmse_start, (rmse_start, rmse_end)
  # The noise level is fitted too: at the optimum sigma is the residual RMS (which is
  # above the true 0.02 because droplets centred in the margin are not in the catalog).
  resid = float(jnp.sqrt(jnp.mean((images - render(state.decoder_params)) ** 2)))
  assert abs(float(m["sigma"]) - resid) < 0.2 * resid, (float(m["sigma"]), resid)


def test_nonfinite_wake_step_keeps_the_decoder(key):
  cfg = ModelConfig(height=16, width=16)
  params = load_params("default", 3, 3, (32, 16, 8))
  images, catalog = make_simulate(cfg, 2)(key, params)
  tx = optax.adam(1e-3)
  state = init_wake(params, 0.05, tx)
  before = jax.tree.map(np.asarray, state.decoder_params)
  state, m = make_wake_step(cfg, tx)(state, key, sharp_posterior(catalog),
                                     images.at[0, 0, 0, 0].set(jnp.nan))
  assert not bool(m["finite"])
  jax.tree.map(np.testing.assert_array_equal, before, state.decoder_params)
