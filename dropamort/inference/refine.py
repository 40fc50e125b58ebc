"""Semi-amortized refinement: K SVI steps of the NumPyro model on one image, the guide
initialized at the encoder's posterior, the decoder frozen, the detections fixed.

The guide is NumPyro's AutoNormal over the droplets' continuous latents (offset, radius,
composition), started at the encoder's medians with its scales carried into
the guide's unconstrained space (first-order). ``on`` is conditioned on the encoder's
detections and hard-core thinning is off, so refinement moves droplets but does not add
or remove them. The SVI update is jitted once per image size and reused. The refined
intervals are widened by the calibration's factors, as the encoder's are.
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

from dropamort.config import ModelConfig
from dropamort.read_config import InferConfig
from dropamort.encoder.posterior import central_z, transformed_normal_sd
from dropamort.inference.api import DropletReader, Result
from dropamort.model.model import droplet_model
from dropamort.model.prior import Prior
from dropamort.pyramid import point_mask
from dropamort.schema import LEVEL, interval_names, sd_name

SITES = ("offset", "radius", "composition")  # The background field stays the encoder's.
EVAL_PARTICLES = 16


def refine_model_config(cfg: ModelConfig, height: int, width: int) -> ModelConfig:
  return dataclasses.replace(cfg, height=height, width=width, hard_core=False, margin=0,
                             shift=False, larger_layers=0)


def _init_values(post, cfg: ModelConfig, prior: Prior, gy: int, gx: int):
  """Encoder medians and natural-space sds, as flat (1, cells, ...) site arrays."""
  sig = jax.nn.sigmoid
  crop = lambda a: a[:, :gy, :gx].reshape((1, gy * gx) + a.shape[3:])
  lo, hi = cfg.radius_min * 1.001, cfg.radius_max * 0.999
  off = sig(crop(post.offset_loc_BYX2))
  r = jnp.clip(jnp.exp(crop(post.logr_loc_BYX)), lo, hi)
  comp = sig(crop(post.comp_loc_BYXT))
  values = {"offset": off, "radius": r, "composition": comp}
  sds = {"offset": crop(post.offset_scale_BYX2) * off * (1 - off),
         "radius": crop(post.logr_scale_BYX) * r,
         "composition": crop(post.comp_scale_BYXT) * comp * (1 - comp)}
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

  def _model(self, image_HWC, fixed):
    """The model of one image with ``fixed`` = (on_G, background_YXC) held at the
    encoder's detections and background field."""
    on_G, background_YXC = fixed
    conditioned = handlers.condition(droplet_model, data={"on": on_G[None].astype(jnp.float32)})
    return conditioned(self.cfg, self.prior, self.decoder_params, image_HWC[None],
                       background=background_YXC[None])

  def setup(self, values):
    guide = AutoNormal(self._model, init_loc_fn=init_to_value(values=values))
    self.svi = SVI(self._model, guide, optax.adam(self.lr), OrderedTraceELBO())
    self.update = jax.jit(self.svi.update)
    self.elbo = jax.jit(lambda key, params, image, fixed: -OrderedTraceELBO(
        num_particles=EVAL_PARTICLES).loss(key, params, self._model, guide, image, fixed))
    return guide

  def init_state(self, key, image, fixed, values, sds):
    """SVI state whose guide starts at the encoder's posterior for this image."""
    guide = self.setup(values) if self.svi is None else self.svi.guide
    params = self.svi.get_params(self.svi.init(key, image, fixed))
    for site in SITES:  # Locations and scales, in the guide's unconstrained space.
      inv = biject_to(guide.prototype_trace[site]["fn"].support).inv
      loc, deriv = jax.jvp(inv, (values[site],), (jnp.ones_like(values[site]),))
      params[f"{site}_auto_loc"] = loc
      params[f"{site}_auto_scale"] = jnp.clip(jnp.abs(deriv) * sds[site], 1e-3, 5.0)
    state = self.svi.init(key, image, fixed, init_params=params)
    # Committed to the device, as the update's outputs are: otherwise the second step
    # (and every image) compiles the update again.
    return jax.device_put(state, jax.devices()[0])


def refine_result(reader: DropletReader, result: Result, options: InferConfig) -> Result:
  """``result`` with its catalog refined by ``options.refine_steps`` SVI steps, at each
  pyramid level on that level's image, for the droplets the level contributed."""
  cands = dict(result.candidates)
  before = after = ms = 0.0
  for lr in result.levels:
    mine = np.flatnonzero((cands["level"] == lr.level.index)
                          & point_mask(cands, options.threshold))
    if not len(mine):
      continue
    refined, elbo0, elbo1, ms_step = _refine_level(reader, lr, cands["cell_row"][mine],
                                                   cands["cell_col"][mine], options)
    for k, v in refined.items():  # Lengths in base pixels.
      cands[k] = np.array(cands[k], dtype=float)  # A copy: the result keeps its own.
      cands[k][mine] = v * (lr.level.factor if k[0] in "xyr" else 1.0)
    before, after, ms = before + elbo0, after + elbo1, max(ms, ms_step)
  table = reader.table(cands, result.ratio_xy, options)
  summary = dict(result.summary)
  summary["refinement"] = {"steps": options.refine_steps, "elbo_before": before,
                           "elbo_after": after, "ms_per_step": ms,
                           "elbo_particles": EVAL_PARTICLES}
  return dataclasses.replace(result, table=table, candidates=cands, summary=summary)


def _refine_level(reader: DropletReader, lr, rows, cols, options: InferConfig):
  """SVI on one level's image for its droplets at cells (rows, cols).

  Returns:
    (refined columns in the level's pixels, ELBO before, ELBO after, ms per step).
  """
  image = jnp.asarray(lr.image)
  h, w = image.shape[:2]
  cache = reader.__dict__.setdefault("_refiners", {})
  refiner = cache.get((h, w)) or cache.setdefault((h, w), Refiner(reader, h, w,
                                                                  options.refine_lr))
  gy, gx = refiner.cfg.grid_shape
  post = lr.posterior
  on_YX = np.zeros((gy, gx), bool)
  on_YX[rows, cols] = True
  on = jnp.asarray(on_YX.reshape(-1))
  fixed = (on, post.bg_loc_BYXC[0, :gy, :gx])
  values, sds = _init_values(post, refiner.cfg, refiner.prior, gy, gx)
  key = jax.random.key(options.seed)
  state = refiner.init_state(key, image, fixed, values, sds)
  eval_key = jax.random.fold_in(key, 1)
  elbo0 = float(refiner.elbo(eval_key, refiner.svi.get_params(state), image, fixed))
  state, _ = refiner.update(state, image, fixed)  # First step: compiles once per size.
  jax.block_until_ready(state)
  t0 = time.perf_counter()
  for _ in range(options.refine_steps - 1):
    state, _ = refiner.update(state, image, fixed)
  jax.block_until_ready(state)
  ms_per_step = 1e3 * (time.perf_counter() - t0) / max(1, options.refine_steps - 1)
  params = refiner.svi.get_params(state)
  elbo1 = float(refiner.elbo(eval_key, params, image, fixed))
  idx = np.asarray(rows) * gx + np.asarray(cols)
  return refined_columns(refiner, params, idx, gx), elbo0, elbo1, ms_per_step


def _site_marginals(guide, params, site: str, idx, widen=1.0):
  """(median, lower, upper, sd) of a guide site's marginals at cells ``idx`` (natural
  space; the central interval of the schema's level), the unconstrained scales times
  ``widen`` (per component of the site's last axis, or one factor)."""
  transform = biject_to(guide.prototype_trace[site]["fn"].support)
  loc = np.asarray(params[f"{site}_auto_loc"])[0, idx]
  scale = np.asarray(params[f"{site}_auto_scale"])[0, idx] * np.asarray(widen)
  z = central_z(LEVEL)
  f = lambda v: np.asarray(transform(jnp.asarray(v)))
  return f(loc), f(loc - z * scale), f(loc + z * scale), transformed_normal_sd(f, loc, scale)


def refined_columns(refiner: Refiner, params, idx, gx: int) -> dict:
  """The table columns (schema of ``dropamort.schema``, level pixels) of the droplets at
  flat cells ``idx``: the refined guide's medians, central intervals and sds. The guide's
  scales of x, y (logit offsets) and log r are widened by the calibration's factors
  (``Prior.widen``) as the encoder's are: SVI fits the same white-noise likelihood, so its
  widths miss the same structure of the real residual."""
  guide = refiner.svi.guide
  cell = refiner.cfg.cell
  widen = np.asarray(refiner.prior.widen, float)
  rows, cols = idx // gx, idx % gx
  out = {}
  med, q_lo, q_hi, sd = _site_marginals(guide, params, "offset", idx, widen[:2])
  for name, k, origin in (("x", 0, cols), ("y", 1, rows)):
    lo, hi = interval_names(name)
    out[name] = (origin + med[:, k]) * cell
    out[lo], out[hi] = (origin + q_lo[:, k]) * cell, (origin + q_hi[:, k]) * cell
    out[sd_name(name)] = sd[:, k] * cell
  lo, hi = interval_names("r")
  out["r"], out[lo], out[hi], out[sd_name("r")] = _site_marginals(guide, params, "radius", idx,
                                                                  widen[2])
  lo, hi = interval_names("composition")
  (out["composition"], out[lo], out[hi],
   out[sd_name("composition")]) = _site_marginals(guide, params, "composition", idx)
  return out
