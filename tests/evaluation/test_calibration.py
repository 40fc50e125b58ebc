"""Coverage, reliability and SBC against toy posteriors whose calibration is known."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dropamort.encoder.posterior import CatalogPosterior
from dropamort.evaluation.calibration import error_summary, reliability, sbc_ranks, uniformity
from dropamort.metrics import coverage
from dropamort.model.catalog import to_table


def _toy_posterior(key, gy=12, gx=12, types=2):
  ks = jax.random.split(key, 6)
  u = lambda k, shape, lo, hi: jax.random.uniform(k, shape, minval=lo, maxval=hi)
  return CatalogPosterior(
      on_logit_BYX=jnp.full((1, gy, gx), 30.0),  # Every cell on: pairs are cell by cell.
      offset_loc_BYX2=u(ks[0], (1, gy, gx, 2), -1, 1),
      offset_scale_BYX2=u(ks[1], (1, gy, gx, 2), 0.1, 0.8),
      logr_loc_BYX=u(ks[2], (1, gy, gx), 0.3, 1.5),
      logr_scale_BYX=u(ks[3], (1, gy, gx), 0.05, 0.4),
      comp_loc_BYXT=u(ks[4], (1, gy, gx, types), -2, 2),
      comp_scale_BYXT=u(ks[5], (1, gy, gx, types), 0.1, 1.0),
      bg_loc_BYXC=jnp.zeros((1, gy, gx, 3)), bg_scale_BYXC=jnp.ones((1, gy, gx, 3)))


@pytest.mark.parametrize("level", [0.5, 0.9])
def test_coverage_of_an_exact_posterior_is_nominal(key, level):
  """Truths drawn from the posterior itself fall inside its central intervals at the
  nominal rate, within Monte Carlo error (n = 300 draws × 144 cells per quantity)."""
  post = _toy_posterior(key)
  draws = post.sample(jax.random.key(1), 300)
  truths = to_table(jax.tree.map(lambda a: a[:, 0], draws), cell=4)
  pred = post.to_table(4, 0.5, level=level)[0]
  n = len(pred["x"])
  pairs = [(np.arange(n), np.arange(n))] * len(truths)
  cov = coverage(truths, [pred] * len(truths), pairs, level)
  assert set(cov) == {"coverage_x", "coverage_y", "coverage_r", "coverage_composition"}
  draws_per_key = 300 * n
  se = np.sqrt(level * (1 - level) / draws_per_key)
  for name, value in cov.items():
    assert abs(value - level) < 4 * se + 1e-3, (name, value)


def test_coverage_detects_intervals_that_are_too_narrow(key):
  post = _toy_posterior(key)
  narrow = post.replace(logr_scale_BYX=post.logr_scale_BYX * 0.5)
  draws = post.sample(jax.random.key(2), 100)
  truths = to_table(jax.tree.map(lambda a: a[:, 0], draws), cell=4)
  pred = narrow.to_table(4, 0.5, level=0.9)[0]
  n = len(pred["x"])
  cov = coverage(truths, [pred] * len(truths), [(np.arange(n), np.arange(n))] * len(truths))
  assert cov["coverage_r"] < 0.65  # 2·Φ(0.82) − 1 ≈ 0.59 for intervals half as wide.


def test_reliability_hand_computed():
  rel = reliability([0.05, 0.15, 0.15, 0.95], [0, 1, 0, 1], bins=10)
  assert rel["count"] == [1, 2, 0, 0, 0, 0, 0, 0, 0, 1]
  np.testing.assert_allclose(rel["ece"], (0.05 + 2 * 0.35 + 0.05) / 4)
  assert rel["frequency"][1] == 0.5 and rel["frequency"][2] is None


def test_reliability_of_calibrated_probabilities_is_near_zero():
  rng = np.random.default_rng(0)
  p = rng.random(200_000)
  assert reliability(p, rng.random(p.size) < p)["ece"] < 0.01
  assert reliability(p, rng.random(p.size) < p**2)["ece"] > 0.1


def _conjugate_ranks(rng, sims, draws, sd_factor=1.0):
  """θ ~ N(0, 1), y ~ N(θ, 1): the posterior is N(y/2, 1/2); sd_factor < 1 makes it
  over-confident."""
  theta = rng.normal(size=sims)
  y = theta + rng.normal(size=sims)
  post = y[:, None] / 2 + np.sqrt(0.5) * sd_factor * rng.normal(size=(sims, draws))
  return sbc_ranks(theta, post, rng)


def test_sbc_ranks_are_uniform_for_the_exact_conjugate_posterior():
  rng = np.random.default_rng(0)
  ranks = _conjugate_ranks(rng, 2000, 99)
  assert ranks.min() >= 0 and ranks.max() <= 99
  assert uniformity(ranks, 99)["pvalue"] > 0.01


def test_sbc_rejects_an_over_confident_posterior():
  rng = np.random.default_rng(0)
  ranks = _conjugate_ranks(rng, 2000, 99, sd_factor=0.5)
  result = uniformity(ranks, 99)
  assert result["pvalue"] < 1e-6
  hist = np.asarray(result["histogram"])
  assert hist[0] + hist[-1] > 3 * hist[len(hist) // 2]  # The ∪ shape of over-confidence.


def test_sbc_ties_of_a_discrete_statistic_are_broken_uniformly():
  """A count drawn from its own posterior (no data: the prior) has uniform ranks only
  because ties are split at random; counting ties as 'below' is clearly non-uniform."""
  rng = np.random.default_rng(1)
  truth = rng.poisson(3.0, 3000)
  draws = rng.poisson(3.0, (3000, 49))
  assert uniformity(sbc_ranks(truth, draws, rng), 49)["pvalue"] > 0.01
  naive = np.sum(draws <= truth[:, None], axis=1)
  assert uniformity(naive, 49)["pvalue"] < 1e-6


def test_uniformity_bins_divide_the_rank_support():
  result = uniformity(np.arange(100), 99)
  assert 100 % result["bins"] == 0 and result["pvalue"] > 0.99
  with pytest.raises(ValueError, match="must divide"):
    uniformity(np.arange(10), 99, bins=7)


def test_error_summary_tells_bias_from_width():
  """Posterior N(y, 1) for y ~ N(θ, 1) is calibrated; shrinking it or shifting it shows
  up in sd_of_z and mean_error respectively."""
  rng = np.random.default_rng(0)
  theta = rng.normal(size=4000)
  y = theta + rng.normal(size=4000)
  noise = rng.normal(size=(4000, 200))
  calibrated = error_summary(theta, y[:, None] + noise)
  assert abs(calibrated["sd_of_z"] - 1) < 0.05 and abs(calibrated["mean_error"]) < 0.05
  assert abs(calibrated["mean_posterior_sd"] - 1) < 0.02
  narrow = error_summary(theta, y[:, None] + 0.5 * noise)
  assert abs(narrow["sd_of_z"] - 2) < 0.1
  biased = error_summary(theta, y[:, None] + noise + 0.5)
  assert abs(biased["mean_error"] - 0.5) < 0.05
