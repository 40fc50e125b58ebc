import dataclasses

import jax

from dropamort.calibration.prior_fit import fit_prior, simulated_stats
from dropamort.config import ModelConfig


def test_refit_recovers_a_known_prior_from_thinned_catalogs(key):
  truth = ModelConfig(height=128, width=128, density=0.03, radius_loc=0.8, radius_scale=0.4)
  observed = simulated_stats(jax.random.fold_in(key, 99), truth, n_images=128)
  # Thinning makes the naive reading wrong: fewer and smaller droplets than the prior.
  assert observed.density < 0.9 * truth.density
  assert observed.log_r_mean < truth.radius_loc - 0.05
  start = dataclasses.replace(truth, density=0.01, radius_loc=1.4, radius_scale=0.25)
  fit = fit_prior(key, observed, start, iters=10, n_images=64)
  assert abs(fit.density - truth.density) / truth.density < 0.1
  assert abs(fit.radius_loc - truth.radius_loc) < 0.08
  assert abs(fit.radius_scale - truth.radius_scale) < 0.06
