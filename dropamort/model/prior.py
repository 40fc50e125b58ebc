"""The catalog prior: per-cell factors as NumPyro sample sites, and hard-core thinning.

The numbers that calibration refits (density, radius distribution, background range) and
the pixel noise level are data, a ``Prior`` pytree, not configuration: they travel in the
training state, enter jitted functions as arguments (a refit never recompiles anything)
and are checkpointed with the weights. ``ModelConfig`` holds their starting values and the
static structure (image size, cell, radius bounds, channels, types).

Sites (plate ``images`` × ``cells`` unless noted; cells are flattened row-major):
``background`` (images × channels), ``on``, ``offset`` (event 2), ``radius``,
``composition`` (event T) and, with hard-core thinning, ``priority``. Thinning is
Matérn type II: a droplet is removed when an overlapping droplet has a higher priority,
so no two kept droplets overlap. The kept mask is the deterministic site ``kept``.
"""

from __future__ import annotations

import math

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from dropamort.config import ModelConfig
from dropamort.model.catalog import Catalog, neighbour_index, pad_flat


class TruncatedLogNormal(dist.TransformedDistribution):
  """exp of a truncated Normal, with its support declared as the interval [low, high]
  (a plain TransformedDistribution would claim (0, inf), and guides built from the
  support, such as AutoNormal's, would then propose radii the prior gives zero mass)."""

  pytree_aux_fields = ("low", "high")

  def __init__(self, loc, scale, *, low: float, high: float):
    self.low, self.high = low, high
    base = dist.TruncatedNormal(loc, scale, low=math.log(low), high=math.log(high))
    super().__init__(base, dist.transforms.ExpTransform())

  @property
  def support(self):
    return dist.constraints.interval(self.low, self.high)


@flax.struct.dataclass
class Prior:
  """The generative model's fitted numbers: prior of the catalog and pixel noise level.

  ``density`` is the intensity of droplet centres per px² before hard-core thinning;
  log r ~ Normal(radius_loc, radius_scale) truncated to the configured radius bounds; the
  background per channel (decoder units) ~ U(background_low, background_high).
  """

  density: jnp.ndarray  # ()
  radius_loc: jnp.ndarray  # ()
  radius_scale: jnp.ndarray  # ()
  background_low: jnp.ndarray  # (C,)
  background_high: jnp.ndarray  # (C,)
  noise_sigma: jnp.ndarray  # ()

  @classmethod
  def from_config(cls, cfg: ModelConfig) -> "Prior":
    """The starting values that ``cfg`` gives."""
    f = lambda v: jnp.asarray(v, jnp.float32)
    c = (cfg.channels,)
    return cls(density=f(cfg.density), radius_loc=f(cfg.radius_loc),
               radius_scale=f(cfg.radius_scale),
               background_low=jnp.broadcast_to(f(cfg.background_low), c),
               background_high=jnp.broadcast_to(f(cfg.background_high), c),
               noise_sigma=f(cfg.noise_sigma))

  def summary(self) -> dict:
    """Plain floats (lists per channel), for logs and JSON."""
    return {k: (np.asarray(v).round(6).tolist()) for k, v in vars(self).items()}


def radius_distribution(cfg: ModelConfig, prior: Prior) -> dist.Distribution:
  """log r ~ Normal(radius_loc, radius_scale) truncated to [radius_min, radius_max]."""
  return TruncatedLogNormal(prior.radius_loc, prior.radius_scale, low=cfg.radius_min,
                            high=cfg.radius_max)


def cell_probability(cfg: ModelConfig, prior: Prior):
  """Prior probability that a cell holds a droplet (before thinning)."""
  return jnp.clip(prior.density * cfg.cell**2, 0.0, 1.0)


def thinning_reach_cells(cfg: ModelConfig) -> int:
  """Cells on each side within which two droplets can overlap."""
  return int(math.ceil((2 * cfg.radius_max + cfg.min_gap) / cfg.cell))


def thin_overlaps(catalog: Catalog, priority_BYX, *, cell: int, k: int, min_gap: float):
  """Matérn II thinning: drop every droplet overlapped by a higher-priority droplet.

  Two droplets overlap when their centres are closer than r1 + r2 + min_gap.

  Returns:
    kept_BYX, a subset of ``catalog.on_BYX`` with no overlapping pair.
  """
  gy, gx = catalog.grid_shape
  nbr_YXM = neighbour_index(gy, gx, k)

  def one(on_YX, centres_YX2, r_YX, prio_YX):
    on_M = pad_flat(on_YX, k, False)[nbr_YXM]
    x_M = pad_flat(centres_YX2[..., 0], k, 0.0)[nbr_YXM]
    y_M = pad_flat(centres_YX2[..., 1], k, 0.0)[nbr_YXM]
    r_M = pad_flat(r_YX, k, 0.0)[nbr_YXM]
    prio_M = pad_flat(prio_YX, k, -1.0)[nbr_YXM]
    dist2 = (x_M - centres_YX2[..., :1]) ** 2 + (y_M - centres_YX2[..., 1:]) ** 2
    clash = on_M & (dist2 < (r_M + r_YX[..., None] + min_gap) ** 2)
    beaten = jnp.any(clash & (prio_M > prio_YX[..., None]), axis=-1)
    return on_YX & ~beaten

  return jax.vmap(one)(catalog.on_BYX, catalog.centres_BYX2(cell), catalog.radius_BYX,
                       priority_BYX)


def sample_catalog(cfg: ModelConfig, prior: Prior, batch: int) -> Catalog:
  """Samples a batch of catalogs on the grid of ``cfg`` (NumPyro sample statements)."""
  gy, gx = cfg.grid_shape
  with numpyro.plate("images", batch, dim=-2):
    with numpyro.plate("channels", cfg.channels, dim=-1):
      background = numpyro.sample(
          "background", dist.Uniform(prior.background_low, prior.background_high))
    with numpyro.plate("cells", gy * gx, dim=-1):
      on = numpyro.sample("on", dist.Bernoulli(probs=cell_probability(cfg, prior)))
      offset = numpyro.sample("offset", dist.Uniform(0.0, 1.0).expand([2]).to_event(1))
      radius = numpyro.sample("radius", radius_distribution(cfg, prior))
      composition = numpyro.sample(
          "composition", dist.Uniform(0.0, 1.0).expand([cfg.types]).to_event(1))
      if cfg.hard_core:
        priority = numpyro.sample("priority", dist.Uniform(0.0, 1.0))

  grid = lambda a: a.reshape((batch, gy, gx) + a.shape[2:])
  catalog = Catalog(on_BYX=grid(on).astype(bool), offset_BYX2=grid(offset),
                    radius_BYX=grid(radius), composition_BYXT=grid(composition),
                    background_BC=background)
  if cfg.hard_core:
    kept = thin_overlaps(catalog, grid(priority), cell=cfg.cell,
                         k=thinning_reach_cells(cfg), min_gap=cfg.min_gap)
    catalog = catalog.replace(on_BYX=numpyro.deterministic("kept", kept))
  return catalog
