"""Empirical Bayes for the catalog prior: refit density and the radius distribution to
the catalogs inferred on real images.

Hard-core thinning removes droplets (large ones more often), so the prior's parameters are
not the statistics of the catalogs one sees. The fit is by simulation: adjust (density,
radius_loc, radius_scale) until catalogs simulated from the prior have the observed kept
density and mean and spread of log r (a few fixed-point iterations). The prior is data, so
the sampler compiles once for a model's structure.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from numpyro import handlers

from dropamort.config import ModelConfig
from dropamort.model.prior import Prior, sample_catalog


@dataclasses.dataclass(frozen=True)
class CatalogStats:
  """Kept droplets per pixel², and mean and sd of their log radius."""

  density: float
  log_r_mean: float
  log_r_sd: float


def stats_of(radii: np.ndarray, area_px: float) -> CatalogStats:
  log_r = np.log(np.asarray(radii, float))
  return CatalogStats(len(log_r) / area_px, float(log_r.mean()), float(log_r.std()))


@functools.lru_cache(maxsize=8)
def _sampler(cfg_items: tuple, n: int):
  cfg = ModelConfig(**dict(cfg_items))

  def sample(key, prior):
    with handlers.seed(rng_seed=key):
      cat = sample_catalog(cfg, prior, n)
    return cat.on_BYX, cat.radius_BYX

  return jax.jit(sample)


def simulated_stats(key, cfg: ModelConfig, prior: Prior, n_images: int = 64) -> CatalogStats:
  """Stats of catalogs drawn from ``prior`` on ``cfg``'s image (thinning included)."""
  items = tuple((f.name, getattr(cfg, f.name)) for f in dataclasses.fields(cfg))
  on, radius = _sampler(items, n_images)(key, prior)
  on, radius = np.asarray(on), np.asarray(radius)
  return stats_of(radius[on], n_images * cfg.height * cfg.width)


def fit_prior(key, observed: CatalogStats, cfg: ModelConfig, prior: Prior, *,
              iters: int = 8, n_images: int = 64) -> Prior:
  """``prior`` with density, radius_loc and radius_scale refit so that its kept catalogs
  match ``observed``. Simulates on ``cfg``'s image size; iteration i draws from
  ``fold_in(key, i)``."""
  max_density = 1.0 / cfg.cell**2
  for i in range(iters):
    sim = simulated_stats(jax.random.fold_in(key, i), cfg, prior, n_images)
    density = float(np.clip(float(prior.density) * observed.density
                            / max(sim.density, 1e-12), 1e-6, max_density))
    prior = prior.replace(
        density=jnp.float32(density),
        radius_loc=jnp.float32(float(prior.radius_loc) + observed.log_r_mean - sim.log_r_mean),
        radius_scale=jnp.float32(np.clip(float(prior.radius_scale) * observed.log_r_sd
                                         / max(sim.log_r_sd, 1e-6), 0.02, 3.0)))
  return prior


def fit_background(prior: Prior, posteriors) -> Prior:
  """The background prior refit to the fields the encoder reads: the range of the images'
  mean levels (per channel, widened by a fifth of itself so new images fit) and the spread
  of each field around its image's mean.

  Args:
    posteriors: one ``CatalogPosterior`` (batch of one) per image.
  """
  fields = [np.asarray(p.bg_loc_BYXC[0]) for p in posteriors]
  means = np.stack([f.mean((0, 1)) for f in fields])  # (images, C)
  lo, hi = means.min(0), means.max(0)
  pad = 0.2 * np.maximum(hi - lo, 0.1)
  spread = float(np.sqrt(np.mean([np.mean((f - f.mean((0, 1))) ** 2) for f in fields])))
  return prior.replace(background_low=jnp.asarray(lo - pad, jnp.float32),
                       background_high=jnp.asarray(hi + pad, jnp.float32),
                       background_sd=jnp.float32(max(spread, 0.02)))
