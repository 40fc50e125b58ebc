"""The posterior over catalogs that the encoder predicts: independent factors per cell.

Per cell: ``on`` ~ Bernoulli(sigmoid(on_logit)); offset (x, y) ~ logit-Normal; radius ~
LogNormal; each composition value ~ logit-Normal. Per image: background ~ Normal. Factors
other than ``on`` count only where a droplet is on. This is what inference and evaluation
consume: ``log_prob``, ``sample``, ``point`` and ``to_table``.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logit
from jax.scipy.stats import norm

from dropamort.model.catalog import Catalog

_EPS = 1e-6
Z90 = 1.6448536269514722  # Standard normal quantile of 0.95: central 90% interval.


def heads_size(types: int) -> int:
  """Channels of the per-cell head: on logit, offset (2 loc, 2 scale), log r (loc,
  scale), composition (T loc, T scale)."""
  return 1 + 4 + 2 + 2 * types


def _scale(raw, min_scale):
  return jax.nn.softplus(raw) + min_scale


def posterior_from_heads(heads_BYXK, bg_loc_BC, bg_raw_scale_BC, *, types, min_scale):
  t = types
  return CatalogPosterior(
      on_logit_BYX=heads_BYXK[..., 0],
      offset_loc_BYX2=heads_BYXK[..., 1:3],
      offset_scale_BYX2=_scale(heads_BYXK[..., 3:5], min_scale),
      logr_loc_BYX=heads_BYXK[..., 5] + 1.0,  # Start near r = e px.
      logr_scale_BYX=_scale(heads_BYXK[..., 6], min_scale),
      comp_loc_BYXT=heads_BYXK[..., 7:7 + t],
      comp_scale_BYXT=_scale(heads_BYXK[..., 7 + t:7 + 2 * t], min_scale),
      bg_loc_BC=bg_loc_BC,
      bg_scale_BC=_scale(bg_raw_scale_BC, min_scale))


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
  bg_loc_BC: jnp.ndarray
  bg_scale_BC: jnp.ndarray

  @property
  def p_BYX(self):
    """Probability that each cell holds a droplet."""
    return jax.nn.sigmoid(self.on_logit_BYX)

  def log_prob_terms(self, catalog: Catalog):
    """Per-cell and per-image log densities: (cells_BYX, background_B)."""
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
    background = norm.logpdf(catalog.background_BC, self.bg_loc_BC, self.bg_scale_BC).sum(-1)
    return cells, background

  def log_prob(self, catalog: Catalog):
    """log q(catalog | image), one value per image."""
    cells, background = self.log_prob_terms(catalog)
    return cells.sum(axis=(-2, -1)) + background

  def sample(self, key, n: int) -> Catalog:
    """n catalogs per image; every field gets a leading axis of size n."""
    ks = jax.random.split(key, 5)
    draw = lambda k, loc, scale: loc + scale * jax.random.normal(k, (n,) + loc.shape)
    return Catalog(
        on_BYX=jax.random.bernoulli(ks[0], self.p_BYX, (n,) + self.p_BYX.shape),
        offset_BYX2=jax.nn.sigmoid(draw(ks[1], self.offset_loc_BYX2, self.offset_scale_BYX2)),
        radius_BYX=jnp.exp(draw(ks[2], self.logr_loc_BYX, self.logr_scale_BYX)),
        composition_BYXT=jax.nn.sigmoid(draw(ks[3], self.comp_loc_BYXT, self.comp_scale_BYXT)),
        background_BC=draw(ks[4], self.bg_loc_BC, self.bg_scale_BC))

  def point(self, threshold: float = 0.5) -> Catalog:
    """Point estimate: cells with p > threshold, each factor at its posterior median."""
    return Catalog(on_BYX=self.p_BYX > threshold,
                   offset_BYX2=jax.nn.sigmoid(self.offset_loc_BYX2),
                   radius_BYX=jnp.exp(self.logr_loc_BYX),
                   composition_BYXT=jax.nn.sigmoid(self.comp_loc_BYXT),
                   background_BC=self.bg_loc_BC)

  def to_table(self, cell: int, threshold: float = 0.5, z: float = Z90):
    """Flat droplet tables (one dict of numpy arrays per image) with uncertainties.

    Columns: x, y, r (medians, px), composition (N, T), p; for each continuous quantity
    its central interval (``*_lo``, ``*_hi``; 5%–95% for ``z`` = 1.645, exact since the
    transforms are monotone) and standard deviation (``*_sd``: exact for r, first-order
    delta method for the logit-Normal x, y and composition).
    """
    a = jax.tree.map(np.asarray, self)
    gy, gx = a.on_logit_BYX.shape[-2:]
    col, row = np.meshgrid(np.arange(gx), np.arange(gy))
    sig = lambda v: 1 / (1 + np.exp(-v))
    p = sig(a.on_logit_BYX)
    tables = []
    for b in range(p.shape[0]):
      m = p[b] > threshold
      ox, oy = a.offset_loc_BYX2[b][m].T
      sx, sy = a.offset_scale_BYX2[b][m].T
      lr, sr = a.logr_loc_BYX[b][m], a.logr_scale_BYX[b][m]
      cl, cs = a.comp_loc_BYXT[b][m], a.comp_scale_BYXT[b][m]
      c, rw = col[m], row[m]
      tables.append({
          "x": (c + sig(ox)) * cell, "y": (rw + sig(oy)) * cell, "r": np.exp(lr),
          "composition": sig(cl), "p": p[b][m],
          "x_lo": (c + sig(ox - z * sx)) * cell, "x_hi": (c + sig(ox + z * sx)) * cell,
          "y_lo": (rw + sig(oy - z * sy)) * cell, "y_hi": (rw + sig(oy + z * sy)) * cell,
          "r_lo": np.exp(lr - z * sr), "r_hi": np.exp(lr + z * sr),
          "composition_lo": sig(cl - z * cs), "composition_hi": sig(cl + z * cs),
          "x_sd": cell * sx * sig(ox) * (1 - sig(ox)),
          "y_sd": cell * sy * sig(oy) * (1 - sig(oy)),
          "r_sd": np.exp(lr) * np.sqrt(np.expm1(sr**2) * np.exp(sr**2)),
          "composition_sd": cs * sig(cl) * (1 - sig(cl))})
    return tables
