"""Semi-amortized refinement: K SVI steps of the NumPyro model on one image, the guide
initialized at the encoder's posterior, the decoder frozen, the detections fixed.

The guide is NumPyro's AutoNormal over the continuous latents (offset, radius,
composition, background), started at the encoder's medians with its scales carried into
the guide's unconstrained space (first-order). ``on`` is conditioned on the encoder's
detections and hard-core thinning is off, so refinement moves droplets but does not add
or remove them. The SVI update is jitted once per image size and reused.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from numpyro import handlers
from numpyro.distributions import biject_to
from numpyro.infer import SVI
from numpyro.infer.autoguide import AutoNormal
from numpyro.infer.elbo import ELBO
from numpyro.infer.initialization import init_to_value
from numpyro.infer.util import compute_log_probs

from dropamort.config import InferConfig, ModelConfig
from dropamort.encoder.posterior import central_z, transformed_normal_sd
from dropamort.inference.api import DropletReader, Result
from dropamort.model.model import droplet_model
from dropamort.model.prior import Prior
from dropamort.schema import LEVEL, interval_names, sd_name

SITES = ("offset", "radius", "composition", "background")
EVAL_PARTICLES = 16


def refine_model_config(cfg: ModelConfig, height: int, width: int) -> ModelConfig:
  return dataclasses.replace(cfg, height=height, width=width, hard_core=False, margin=0,
                             shift=False)


def _init_values(post, cfg: ModelConfig, prior: Prior, gy: int, gx: int):
  """Encoder medians and natural-space sds, as flat (1, cells, ...) site arrays."""
  sig = jax.nn.sigmoid
  crop = lambda a: a[:, :gy, :gx].reshape((1, gy * gx) + a.shape[3:])
  lo, hi = cfg.radius_min * 1.001, cfg.radius_max * 0.999
  off = sig(crop(post.offset_loc_BYX2))
  r = jnp.clip(jnp.exp(crop(post.logr_loc_BYX)), lo, hi)
  comp = sig(crop(post.comp_loc_BYXT))
  bg_lo, bg_hi = prior.background_low, prior.background_high
  span = bg_hi - bg_lo
  bg = jnp.clip(post.bg_loc_BC, bg_lo + 1e-3 * span, bg_hi - 1e-3 * span)
  values = {"offset": off, "radius": r, "composition": comp, "background": bg}
  sds = {"offset": crop(post.offset_scale_BYX2) * off * (1 - off),
         "radius": crop(post.logr_scale_BYX) * r,
         "composition": crop(post.comp_scale_BYXT) * comp * (1 - comp),
         "background": post.bg_scale_BC}
  return values, sds


class OrderedTraceELBO(ELBO):
  """NumPyro's ``Trace_ELBO`` (reparameterized sites, no enumeration) with the site log
  densities summed in trace order. ``Trace_ELBO`` sums over a ``set`` of site names, whose
  order follows Python's per-process hash seed: every run then compiled a different
  program (so the persistent compilation cache never hit) and rounded differently."""

  def loss_with_mutable_state(self, rng_key, param_map, model, guide, *args, **kwargs):
    def particle(key):
      model_key, guide_key = jax.random.split(key)
      guide_lp, guide_trace = compute_log_probs(handlers.seed(guide, guide_key), args,
                                                kwargs, param_map)
      model_lp, _ = compute_log_probs(
          handlers.replay(handlers.seed(model, model_key), guide_trace), args, kwargs,
          param_map)
      return sum(model_lp.values()) - sum(guide_lp.values())

    if self.num_particles == 1:
      return {"loss": -particle(rng_key), "mutable_state": None}
    elbos = self.vectorize_particles_fn(particle, jax.random.split(rng_key, self.num_particles))
    return {"loss": -jnp.mean(elbos), "mutable_state": None}


class Refiner:
  """SVI on one image size: holds the model arguments' structure and the jitted update."""

  def __init__(self, reader: DropletReader, height: int, width: int, lr: float):
    self.cfg = refine_model_config(reader.cfg.model, height, width)
    self.prior = reader.predictor.prior
    self.decoder_params = reader.predictor.decoder_params
    self.svi = None
    self.lr = lr

  def _model(self, image_HWC, on_G):
    conditioned = handlers.condition(droplet_model, data={"on": on_G[None].astype(jnp.float32)})
    return conditioned(self.cfg, self.prior, self.decoder_params, image_HWC[None])

  def setup(self, values):
    guide = AutoNormal(self._model, init_loc_fn=init_to_value(values=values))
    self.svi = SVI(self._model, guide, optax.adam(self.lr), OrderedTraceELBO())
    self.update = jax.jit(self.svi.update)
    self.elbo = jax.jit(lambda key, params, image, on: -OrderedTraceELBO(
        num_particles=EVAL_PARTICLES).loss(key, params, self._model, guide, image, on))
    return guide

  def init_state(self, key, image, on, values, sds):
    """SVI state whose guide starts at the encoder's posterior for this image."""
    guide = self.setup(values) if self.svi is None else self.svi.guide
    params = self.svi.get_params(self.svi.init(key, image, on))
    for site in SITES:  # Locations and scales, in the guide's unconstrained space.
      inv = biject_to(guide.prototype_trace[site]["fn"].support).inv
      loc, deriv = jax.jvp(inv, (values[site],), (jnp.ones_like(values[site]),))
      params[f"{site}_auto_loc"] = loc
      params[f"{site}_auto_scale"] = jnp.clip(jnp.abs(deriv) * sds[site], 1e-3, 5.0)
    state = self.svi.init(key, image, on, init_params=params)
    # Committed to the device, as the update's outputs are: otherwise the second step
    # (and every image) compiles the update again.
    return jax.device_put(state, jax.devices()[0])


def refine_result(reader: DropletReader, result: Result, options: InferConfig) -> Result:
  """``result`` with its catalog refined by ``options.refine_steps`` SVI steps."""
  cell = reader.cfg.model.cell
  image = jnp.asarray(result.image)
  h, w = image.shape[:2]
  cache = reader.__dict__.setdefault("_refiners", {})
  refiner = cache.get((h, w)) or cache.setdefault((h, w), Refiner(reader, h, w,
                                                                  options.refine_lr))
  gy, gx = refiner.cfg.grid_shape
  post = result.posterior
  on = (post.p_BYX[0, :gy, :gx] > options.threshold).reshape(-1)
  values, sds = _init_values(post, refiner.cfg, refiner.prior, gy, gx)
  key = jax.random.key(options.seed)
  state = refiner.init_state(key, image, on, values, sds)
  eval_key = jax.random.fold_in(key, 1)
  elbo0 = float(refiner.elbo(eval_key, refiner.svi.get_params(state), image, on))
  state, _ = refiner.update(state, image, on)  # First step: compiles once per size.
  jax.block_until_ready(state)
  t0 = time.perf_counter()
  for _ in range(options.refine_steps - 1):
    state, _ = refiner.update(state, image, on)
  jax.block_until_ready(state)
  ms_per_step = 1e3 * (time.perf_counter() - t0) / max(1, options.refine_steps - 1)
  params = refiner.svi.get_params(state)
  elbo1 = float(refiner.elbo(eval_key, params, image, on))
  table = refined_table(refiner, params, on, gy, gx, cell, result)
  summary = dict(result.summary)
  summary["refinement"] = {"steps": options.refine_steps, "elbo_before": elbo0,
                           "elbo_after": elbo1, "ms_per_step": ms_per_step,
                           "elbo_particles": EVAL_PARTICLES}
  return dataclasses.replace(result, table=table, summary=summary)


def _site_marginals(guide, params, site: str, idx):
  """(median, q05, q95, sd) of a guide site's marginals at cells ``idx`` (natural space)."""
  transform = biject_to(guide.prototype_trace[site]["fn"].support)
  loc = np.asarray(params[f"{site}_auto_loc"])[0, idx]
  scale = np.asarray(params[f"{site}_auto_scale"])[0, idx]
  z = central_z(LEVEL)
  f = lambda v: np.asarray(transform(jnp.asarray(v)))
  return f(loc), f(loc - z * scale), f(loc + z * scale), transformed_normal_sd(f, loc, scale)


def refined_table(refiner: Refiner, params, on, gy: int, gx: int, cell: int, result: Result):
  """The droplet table (schema of ``dropamort.schema``) with the refined guide's
  medians, 90% intervals and sds, for the droplets of the single-pass table."""
  guide = refiner.svi.guide
  idx = np.flatnonzero(np.asarray(on))
  rows, cols = idx // gx, idx % gx
  rx, ry = result.ratio_xy
  rr = float(np.sqrt(rx * ry))
  table = result.table.copy()
  # The same droplets as the single-pass table: selected by the encoder's positions.
  point = jax.nn.sigmoid(result.posterior.offset_loc_BYX2[0, :gy, :gx]).reshape(-1, 2)
  point = np.asarray(point)[idx]
  inside = ((cols + point[:, 0]) * cell < result.image.shape[1]) & (
      (rows + point[:, 1]) * cell < result.image.shape[0])
  idx, rows, cols = idx[inside], rows[inside], cols[inside]
  if len(idx) != len(table):
    raise RuntimeError("refined catalog does not line up with the single-pass table")
  med, q_lo, q_hi, sd = _site_marginals(guide, params, "offset", idx)
  for name, k, origin, f in (("x", 0, cols, rx), ("y", 1, rows, ry)):
    lo, hi = interval_names(name)
    table[name] = (origin + med[:, k]) * cell * f
    table[lo], table[hi] = (origin + q_lo[:, k]) * cell * f, (origin + q_hi[:, k]) * cell * f
    table[sd_name(name)] = sd[:, k] * cell * f
  med, q_lo, q_hi, sd = _site_marginals(guide, params, "radius", idx)
  lo, hi = interval_names("r")
  table["r"], table[lo], table[hi], table[sd_name("r")] = med * rr, q_lo * rr, q_hi * rr, sd * rr
  med, q_lo, q_hi, sd = _site_marginals(guide, params, "composition", idx)
  for t in range(med.shape[1]):
    name = f"composition_{t + 1}"
    lo, hi = interval_names(name)
    table[name], table[lo], table[hi], table[sd_name(name)] = (
        med[:, t], q_lo[:, t], q_hi[:, t], sd[:, t])
  return table
