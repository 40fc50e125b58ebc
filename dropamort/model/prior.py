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
from dropamort.model.background import cell_background, knot_shape
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


IDENTITY_EDGE = (1.0, 0.0, 1.0)  # ``Prior.edge`` that reports the read radii unchanged.


def edge_factor(r, edge) -> np.ndarray:
  """Per read radius r (in the pixels ``edge`` = (a, b, r0), a ``Prior.edge``, was fitted
  in), the factor that takes it to the edge: a + b / max(r, r0). The map r -> r · factor
  is increasing."""
  a, b, r0 = (float(v) for v in np.asarray(edge))
  return a + b / np.maximum(np.asarray(r, np.float64), r0)


def edge_slope(r, edge) -> np.ndarray:
  """The derivative of the map r -> r · ``edge_factor``: a above r0, a + b / r0 below."""
  a, b, r0 = (float(v) for v in np.asarray(edge))
  return np.where(np.asarray(r, np.float64) >= r0, a, a + b / r0)


def is_identity(edge) -> bool:
  """Whether ``edge`` leaves every radius as read (a = 1, b = 0; r0 then does nothing)."""
  a, b, _ = (float(v) for v in np.asarray(edge))
  return a == 1.0 and b == 0.0


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
  background_sd: jnp.ndarray  # () spread of the smooth background field
  larger_fraction: jnp.ndarray  # () area share of each layer of larger droplets
  noise_sigma: jnp.ndarray  # ()
  # (3,) how much wider than the encoder's the posterior of x, y and log r must be on the
  # calibration's real images (their misfit; dropamort.training.misfit); 1 without them.
  widen: jnp.ndarray
  # () log s: where the real images put a droplet's outline relative to the encoder's
  # read (radius × s), searched after the last wake stage with the decoder's edge held
  # sharp (``training.outline``; ``calibrate.outline``); 0 without it. A record, not
  # applied when reading: the sleep stage after the search teaches the encoder the outline.
  outline: jnp.ndarray
  # (3,) (a, b, r0): where the droplets' edges lie, as a map of the read radius r (original
  # image px): a · r + b for r >= r0, proportionally below (``training.edge``); measured
  # on the calibration's held-out images; (1, 0, 1), no change, without them. Applied to
  # the radii reported (``inference.catalog_table.at_edge``), never to those rendered.
  edge: jnp.ndarray

  @classmethod
  def from_config(cls, cfg: ModelConfig) -> "Prior":
    """The starting values that ``cfg`` gives."""
    f = lambda v: jnp.asarray(v, jnp.float32)
    c = (cfg.channels,)
    return cls(density=f(cfg.density), radius_loc=f(cfg.radius_loc),
               radius_scale=f(cfg.radius_scale),
               background_low=jnp.broadcast_to(f(cfg.background_low), c),
               background_high=jnp.broadcast_to(f(cfg.background_high), c),
               background_sd=f(cfg.background_sd), larger_fraction=f(cfg.larger_fraction),
               noise_sigma=f(cfg.noise_sigma), widen=jnp.ones((3,), jnp.float32),
               outline=jnp.zeros((), jnp.float32),
               edge=jnp.asarray(IDENTITY_EDGE, jnp.float32))

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


def thin_by_larger(lower: Catalog, upper: Catalog, *, lower_cell: int,
                   upper_cell: int, k: int, min_gap: float):
  """Drops every droplet of ``lower`` that overlaps a droplet of the coarser layer
  ``upper`` (larger droplets win). ``k``: upper cells on each side that can hold a clash.

  Returns:
    kept_BYX, a subset of ``lower.on_BYX``.
  """
  m = upper_cell // lower_cell
  gy, gx = lower.grid_shape
  big_x = upper.grid_shape[1] + 2 * k
  span = np.arange(2 * k + 1)
  rows = (np.arange(gy) // m)[:, None] + span[None]
  cols = (np.arange(gx) // m)[:, None] + span[None]
  nbr_YXM = jnp.asarray((rows[:, None, :, None] * big_x + cols[None, :, None, :]).reshape(
      gy, gx, -1))

  def one(on_YX, centres_YX2, r_YX, up_on, up_centres, up_r):
    on_M = pad_flat(up_on, k, False)[nbr_YXM]
    x_M = pad_flat(up_centres[..., 0], k, 0.0)[nbr_YXM]
    y_M = pad_flat(up_centres[..., 1], k, 0.0)[nbr_YXM]
    r_M = pad_flat(up_r, k, 0.0)[nbr_YXM]
    dist2 = (x_M - centres_YX2[..., :1]) ** 2 + (y_M - centres_YX2[..., 1:]) ** 2
    clash = on_M & (dist2 < (r_M + r_YX[..., None] + min_gap) ** 2)
    return on_YX & ~jnp.any(clash, axis=-1)

  return jax.vmap(one)(lower.on_BYX, lower.centres_BYX2(lower_cell), lower.radius_BYX,
                       upper.on_BYX, upper.centres_BYX2(upper_cell), upper.radius_BYX)


def sample_background(cfg: ModelConfig, prior: Prior, batch: int, grid, cell: int):
  """Per-cell background (B, gy, gx, C): a mean level per image plus, with
  ``background_knot``, a smooth field of knot deviations (NumPyro sites ``background``
  and ``background_field``)."""
  with numpyro.plate("images", batch, dim=-2), numpyro.plate("channels", cfg.channels, dim=-1):
    mean = numpyro.sample("background", dist.Uniform(prior.background_low,
                                                     prior.background_high))
  if not cfg.background_knot:
    return jnp.broadcast_to(mean[:, None, None, :], (batch,) + tuple(grid) + (cfg.channels,))
  ky, kx = knot_shape(cfg.height, cfg.width, cfg.background_knot)
  with numpyro.plate("field_images", batch, dim=-1):
    field = numpyro.sample("background_field", dist.Normal(0.0, prior.background_sd).expand(
        [ky, kx, cfg.channels]).to_event(3))
  return cell_background(mean, field, grid=grid, cell=cell, knot=cfg.background_knot)


def _layer_sites(cfg: ModelConfig, name: str, n: int, p_on, radius_dist):
  """The per-cell sample sites of one layer (inside the images plate)."""
  with numpyro.plate(f"{name}cells", n, dim=-1):
    on = numpyro.sample(f"{name}on", dist.Bernoulli(probs=p_on))
    offset = numpyro.sample(f"{name}offset", dist.Uniform(0.0, 1.0).expand([2]).to_event(1))
    radius = numpyro.sample(f"{name}radius", radius_dist)
    composition = numpyro.sample(f"{name}composition",
                                 dist.Uniform(0.0, 1.0).expand([cfg.types]).to_event(1))
    priority = (numpyro.sample(f"{name}priority", dist.Uniform(0.0, 1.0))
                if cfg.hard_core else None)
  return on, offset, radius, composition, priority


def larger_grid(cfg: ModelConfig, j: int) -> tuple[int, int]:
  cell = cfg.larger(j)[0]
  return -(-cfg.height // cell), -(-cfg.width // cell)


def sample_scene(cfg: ModelConfig, prior: Prior, batch: int, background=None):
  """Samples a batch of scenes on ``cfg``'s canvas: the catalog of droplets in the radius
  band (on the grid of ``cfg.cell``) and the catalogs of the larger layers (NumPyro
  sample statements). ``background`` (B, gy, gx, C) fixes the background instead of
  sampling it.

  Returns:
    (band Catalog, tuple of larger-layer Catalogs).
  """
  gy, gx = cfg.grid_shape
  if background is None:
    background = sample_background(cfg, prior, batch, (gy, gx), cfg.cell)
  layers = []
  with numpyro.plate("images", batch, dim=-2):
    sites = [_layer_sites(cfg, "", gy * gx, cell_probability(cfg, prior),
                          radius_distribution(cfg, prior))]
    for j in range(1, cfg.larger_layers + 1):
      cell, lo, hi = cfg.larger(j)
      mean_r2 = (hi**2 - lo**2) / (2 * math.log(hi / lo))  # E[r²] of log-uniform r.
      p_on = jnp.clip(prior.larger_fraction * cell**2 / (math.pi * mean_r2), 0.0, 1.0)
      lgy, lgx = larger_grid(cfg, j)
      sites.append(_layer_sites(cfg, f"larger{j}_", lgy * lgx, p_on, dist.LogUniform(lo, hi)))
  for j, (on, offset, radius, composition, priority) in enumerate(sites):
    shape = (gy, gx) if j == 0 else larger_grid(cfg, j)
    grid = lambda a: a.reshape((batch,) + shape + a.shape[2:])
    cat = Catalog(on_BYX=grid(on).astype(bool), offset_BYX2=grid(offset),
                  radius_BYX=grid(radius), composition_BYXT=grid(composition),
                  background_BYXC=background if j == 0 else jnp.zeros(
                      (batch,) + shape + (cfg.channels,)))
    if cfg.hard_core:
      cell = cfg.cell if j == 0 else cfg.larger(j)[0]
      hi = cfg.radius_max if j == 0 else cfg.larger(j)[2]
      kept = thin_overlaps(cat, grid(priority), cell=cell,
                           k=int(math.ceil((2 * hi + cfg.min_gap) / cell)), min_gap=cfg.min_gap)
      cat = cat.replace(on_BYX=kept)
    layers.append(cat)
  if cfg.hard_core:  # Larger droplets win: from the largest layer down.
    for upper in range(len(layers) - 1, 0, -1):
      ucell, _, uhi = cfg.larger(upper)
      for lower in range(upper):
        lcell = cfg.cell if lower == 0 else cfg.larger(lower)[0]
        lhi = cfg.radius_max if lower == 0 else cfg.larger(lower)[2]
        kept = thin_by_larger(layers[lower], layers[upper], lower_cell=lcell, upper_cell=ucell,
                              k=int(math.ceil((uhi + lhi + cfg.min_gap) / ucell)),
                              min_gap=cfg.min_gap)
        layers[lower] = layers[lower].replace(on_BYX=kept)
    layers[0] = layers[0].replace(on_BYX=numpyro.deterministic("kept", layers[0].on_BYX))
  return layers[0], tuple(layers[1:])


def sample_catalog(cfg: ModelConfig, prior: Prior, batch: int) -> Catalog:
  """The band catalog of ``sample_scene`` (thinned by the larger layers too)."""
  return sample_scene(cfg, prior, batch)[0]
