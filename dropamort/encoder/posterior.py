"""The posterior over catalogs that the encoder predicts: independent factors per cell.

Per cell: ``on`` ~ Bernoulli(sigmoid(on_logit)); offset (x, y) ~ logit-Normal; radius ~
LogNormal; each composition value ~ logit-Normal; the background field's value at the
cell's centre ~ Normal (per channel). Factors
other than ``on`` count only where a droplet is on. This is what inference and evaluation
consume: ``log_prob``, ``sample``, ``point`` and ``to_table``.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import scipy.stats
from jax.scipy.special import logit
from jax.scipy.stats import norm

from dropamort.model.catalog import Catalog
from dropamort.schema import LEVEL, interval_names, sd_name

_EPS = 1e-6
_GH_NODES, _GH_WEIGHTS = np.polynomial.hermite_e.hermegauss(32)  # For E[f(Z)], Z ~ N(0, 1).


def transformed_normal_sd(transform, loc, scale):
  """Standard deviation of ``transform(loc + scale · Z)``, Z ~ N(0, 1), by 32-point
  Gauss–Hermite quadrature: one definition of ``*_sd`` for every posterior factor
  (logit-Normal offsets and compositions, log-Normal radii, the refinement guide's
  transformed Normals). Exact for polynomials of degree < 64; for the log-Normal it agrees
  with the closed form to ~1e-6 at the scales the encoder predicts."""
  loc, scale = np.asarray(loc, np.float64), np.asarray(scale, np.float64)
  w = _GH_WEIGHTS / _GH_WEIGHTS.sum()
  values = np.asarray(transform(loc[..., None] + scale[..., None] * _GH_NODES), np.float64)
  mean = (values * w).sum(-1)
  return np.sqrt(np.maximum(((values - mean[..., None]) ** 2 * w).sum(-1), 0.0))


def central_z(level: float) -> float:
  """The standard-normal z of a central interval of probability ``level``."""
  return float(scipy.stats.norm.ppf(0.5 + level / 2))


def heads_size(types: int, channels: int) -> int:
  """Channels of the per-cell head: on logit, offset (2 loc, 2 scale), log r (loc,
  scale), composition (T loc, T scale), background (C loc, C scale)."""
  return 1 + 4 + 2 + 2 * types + 2 * channels


def _scale(raw, min_scale):
  return jax.nn.softplus(raw) + min_scale


def posterior_from_heads(heads_BYXK, bg_base_BYXC, *, types, min_scale):
  """The posterior of raw head outputs; ``bg_base_BYXC`` is added to the background's
  location (the logit of the local mean colour: a strong hint, since most pixels are
  background)."""
  t, c = types, bg_base_BYXC.shape[-1]
  bg = heads_BYXK[..., 7 + 2 * t:]
  return CatalogPosterior(
      on_logit_BYX=heads_BYXK[..., 0],
      offset_loc_BYX2=heads_BYXK[..., 1:3],
      offset_scale_BYX2=_scale(heads_BYXK[..., 3:5], min_scale),
      logr_loc_BYX=heads_BYXK[..., 5] + 1.0,  # Start near r = e px.
      logr_scale_BYX=_scale(heads_BYXK[..., 6], min_scale),
      comp_loc_BYXT=heads_BYXK[..., 7:7 + t],
      comp_scale_BYXT=_scale(heads_BYXK[..., 7 + t:7 + 2 * t], min_scale),
      bg_loc_BYXC=bg_base_BYXC + bg[..., :c],
      bg_scale_BYXC=_scale(bg[..., c:], min_scale))


def _logit_normal_logpdf(u, loc, scale):
  u = jnp.clip(u, _EPS, 1 - _EPS)
  return norm.logpdf(logit(u), loc, scale) - jnp.log(u) - jnp.log1p(-u)


@flax.struct.dataclass
class CatalogPosterior:
  """q(catalog | image) for a batch of images."""

  on_logit_BYX: jnp.ndarray
  offset_loc_BYX2: jnp.ndarray
  offset_scale_BYX2: jnp.ndarray
  logr_loc_BYX: jnp.ndarray
  logr_scale_BYX: jnp.ndarray
  comp_loc_BYXT: jnp.ndarray
  comp_scale_BYXT: jnp.ndarray
  bg_loc_BYXC: jnp.ndarray
  bg_scale_BYXC: jnp.ndarray

  @property
  def p_BYX(self):
    """Probability that each cell holds a droplet."""
    return jax.nn.sigmoid(self.on_logit_BYX)

  def log_prob_terms(self, catalog: Catalog):
    """Log densities per cell: (droplet factors_BYX, background_BYX)."""
    on = catalog.on_BYX.astype(jnp.float32)
    log_on = on * jax.nn.log_sigmoid(self.on_logit_BYX) + (1 - on) * jax.nn.log_sigmoid(
        -self.on_logit_BYX)
    r = jnp.maximum(catalog.radius_BYX, _EPS)
    continuous = (
        _logit_normal_logpdf(catalog.offset_BYX2, self.offset_loc_BYX2,
                             self.offset_scale_BYX2).sum(-1)
        + norm.logpdf(jnp.log(r), self.logr_loc_BYX, self.logr_scale_BYX) - jnp.log(r)
        + _logit_normal_logpdf(catalog.composition_BYXT, self.comp_loc_BYXT,
                               self.comp_scale_BYXT).sum(-1))
    cells = log_on + on * continuous
    background = norm.logpdf(catalog.background_BYXC, self.bg_loc_BYXC,
                             self.bg_scale_BYXC).sum(-1)
    return cells, background

  def log_prob(self, catalog: Catalog):
    """log q(catalog | image), one value per image."""
    cells, background = self.log_prob_terms(catalog)
    return (cells + background).sum(axis=(-2, -1))

  def sample(self, key, n: int) -> Catalog:
    """n catalogs per image; every field gets a leading axis of size n."""
    ks = jax.random.split(key, 5)
    draw = lambda k, loc, scale: loc + scale * jax.random.normal(k, (n,) + loc.shape)
    return Catalog(
        on_BYX=jax.random.bernoulli(ks[0], self.p_BYX, (n,) + self.p_BYX.shape),
        offset_BYX2=jax.nn.sigmoid(draw(ks[1], self.offset_loc_BYX2, self.offset_scale_BYX2)),
        radius_BYX=jnp.exp(draw(ks[2], self.logr_loc_BYX, self.logr_scale_BYX)),
        composition_BYXT=jax.nn.sigmoid(draw(ks[3], self.comp_loc_BYXT, self.comp_scale_BYXT)),
        background_BYXC=draw(ks[4], self.bg_loc_BYXC, self.bg_scale_BYXC))

  def widened(self, factors) -> "CatalogPosterior":
    """The posterior with the scales of x, y (logit offsets) and log r multiplied by
    ``factors`` (3,); locations and everything else unchanged."""
    k = jnp.asarray(factors, jnp.float32)
    return self.replace(offset_scale_BYX2=self.offset_scale_BYX2 * k[:2],
                        logr_scale_BYX=self.logr_scale_BYX * k[2])

  def point(self, threshold: float = 0.5) -> Catalog:
    """Point estimate: cells with p > threshold, each factor at its posterior median."""
    return Catalog(on_BYX=self.p_BYX > threshold,
                   offset_BYX2=jax.nn.sigmoid(self.offset_loc_BYX2),
                   radius_BYX=jnp.exp(self.logr_loc_BYX),
                   composition_BYXT=jax.nn.sigmoid(self.comp_loc_BYXT),
                   background_BYXC=self.bg_loc_BYXC)

  def to_table(self, cell: int, threshold: float = 0.5, level: float = LEVEL):
    """Flat droplet tables (one dict of numpy arrays per image), schema of
    ``dropamort.schema``: x, y, r (medians, px), composition (N, T), p; for each of them
    the central ``level`` interval (exact: the transforms are monotone) and the
    posterior sd (``transformed_normal_sd``).
    """
    a = jax.tree.map(np.asarray, self)
    gy, gx = a.on_logit_BYX.shape[-2:]
    col, row = np.meshgrid(np.arange(gx), np.arange(gy))
    sig = lambda v: 1 / (1 + np.exp(-v))
    z = central_z(level)
    p = sig(a.on_logit_BYX)
    tables = []
    for b in range(p.shape[0]):
      m = p[b] > threshold
      table = {}

      def put(name, loc, scale, transform, unit=lambda v, sd=False: v):
        lo, hi = interval_names(name, level)
        table[name] = unit(transform(loc))
        table[lo], table[hi] = unit(transform(loc - z * scale)), unit(transform(loc + z * scale))
        table[sd_name(name)] = unit(transformed_normal_sd(transform, loc, scale), sd=True)

      for name, origin, k in (("x", col[m], 0), ("y", row[m], 1)):
        put(name, a.offset_loc_BYX2[b][m][:, k], a.offset_scale_BYX2[b][m][:, k], sig,
            lambda v, sd=False, origin=origin: v * cell if sd else (origin + v) * cell)
      put("r", a.logr_loc_BYX[b][m], a.logr_scale_BYX[b][m], np.exp)
      put("composition", a.comp_loc_BYXT[b][m], a.comp_scale_BYXT[b][m], sig)
      table["p"] = p[b][m]
      table["cell_row"], table["cell_col"] = row[m], col[m]  # Internal: the droplet's cell.
      # The radius factor itself (internal: summaries draw radii from it).
      table["r_log_loc"], table["r_log_scale"] = a.logr_loc_BYX[b][m], a.logr_scale_BYX[b][m]
      # The offsets' logit-normal factors (internal: ``Result.sample`` draws x and y).
      table["offset_loc"] = a.offset_loc_BYX2[b][m]
      table["offset_scale"] = a.offset_scale_BYX2[b][m]
      tables.append(table)
    return tables
