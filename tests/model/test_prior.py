"""Prior samples against independent references (scipy, brute-force thinning)."""

import dataclasses
import math

import numpy as np
import scipy.stats
from numpyro import handlers

from dropamort.config import ModelConfig
from dropamort.model.prior import Prior, sample_catalog


def draw(cfg, key, batch):
  with handlers.seed(rng_seed=key), handlers.trace() as tr:
    catalog = sample_catalog(cfg, Prior.from_config(cfg), batch)
  return catalog, tr


def test_density_matches_config_without_thinning(key):
  cfg = ModelConfig(height=64, width=64, density=0.02, hard_core=False)
  catalog, _ = draw(cfg, key, 200)
  n_cells = catalog.on_BYX.size
  p = cfg.density * cfg.cell**2
  rate = float(catalog.on_BYX.mean())
  assert abs(rate - p) < 4 * math.sqrt(p * (1 - p) / n_cells)
  # Droplets per pixel², the configured quantity.
  per_px = float(catalog.on_BYX.sum()) / (200 * 64 * 64)
  assert abs(per_px - cfg.density) / cfg.density < 0.03


def test_radius_distribution_is_the_truncated_lognormal(key):
  cfg = ModelConfig(hard_core=False, radius_loc=0.7, radius_scale=0.5, radius_min=1.0,
                    radius_max=8.0)
  catalog, _ = draw(cfg, key, 20)
  r = np.asarray(catalog.radius_BYX).ravel()
  assert r.min() >= 1.0 and r.max() <= 8.0
  a, b = (math.log(1.0) - 0.7) / 0.5, (math.log(8.0) - 0.7) / 0.5
  ref = scipy.stats.truncnorm(a, b, loc=0.7, scale=0.5)
  assert scipy.stats.kstest(np.log(r), ref.cdf).pvalue > 0.01


def brute_force_matern2(x, y, r, prio, on, gap):
  """Independent O(N²) Matérn II thinning over all droplets of one image."""
  idx = np.flatnonzero(on)
  kept = np.zeros_like(on)
  for i in idx:
    d = np.hypot(x[idx] - x[i], y[idx] - y[i])
    clash = (d < r[idx] + r[i] + gap) & (idx != i)
    kept[i] = not np.any(clash & (prio[idx] > prio[i]))
  return kept


def test_hard_core_leaves_no_overlap_and_equals_brute_force(key):
  cfg = ModelConfig(height=48, width=48, density=0.05, radius_loc=1.0, min_gap=0.5,
                    larger_layers=0)
  catalog, tr = draw(cfg, key, 6)
  centres = np.asarray(catalog.centres_BYX2(cfg.cell))
  on0 = np.asarray(tr["on"]["value"]).astype(bool)
  prio = np.asarray(tr["priority"]["value"])
  for b in range(6):
    x, y = centres[b, ..., 0].ravel(), centres[b, ..., 1].ravel()
    r = np.asarray(catalog.radius_BYX[b]).ravel()
    kept = np.asarray(catalog.on_BYX[b]).ravel()
    np.testing.assert_array_equal(kept, brute_force_matern2(x, y, r, prio[b], on0[b], 0.5))
    i = np.flatnonzero(kept)
    d = np.hypot(x[i, None] - x[i], y[i, None] - y[i]) + np.eye(len(i)) * 1e9
    assert np.all(d >= r[i, None] + r[i] + 0.5)
    assert kept.sum() < on0[b].sum()  # Crowded enough that thinning does something.


def test_hard_core_off_keeps_everything(key):
  cfg = dataclasses.replace(ModelConfig(), hard_core=False)
  catalog, tr = draw(cfg, key, 2)
  assert "priority" not in tr and "kept" not in tr
  np.testing.assert_array_equal(np.asarray(catalog.on_BYX).reshape(2, -1),
                                np.asarray(tr["on"]["value"]).astype(bool))
