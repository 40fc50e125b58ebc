import jax
import jax.numpy as jnp

from dropamort.config import ModelConfig
from dropamort.model.prior import Prior
from dropamort.training.prior_fit import fit_prior, simulated_stats


def test_refit_recovers_a_known_prior_from_thinned_catalogs(key):
  cfg = ModelConfig(height=128, width=128, larger_layers=0)
  truth = Prior.from_config(cfg).replace(density=jnp.float32(0.03),
                                         radius_loc=jnp.float32(0.8),
                                         radius_scale=jnp.float32(0.4))
  observed = simulated_stats(jax.random.fold_in(key, 99), cfg, truth, n_images=128)
  # Thinning makes the naive reading wrong: fewer and smaller droplets than the prior.
  assert observed.density < 0.9 * 0.03
  assert observed.log_r_mean < 0.8 - 0.05
  start = truth.replace(density=jnp.float32(0.01), radius_loc=jnp.float32(1.4),
                        radius_scale=jnp.float32(0.25))
  fit = fit_prior(key, observed, cfg, start, iters=10, n_images=64)
  assert abs(float(fit.density) - 0.03) / 0.03 < 0.1
  assert abs(float(fit.radius_loc) - 0.8) < 0.08
  assert abs(float(fit.radius_scale) - 0.4) < 0.06
