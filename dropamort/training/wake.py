"""The wake stage's step: fit the optics decoder and the noise level to real crops.

The encoder is fixed during the wake stage, so each real image's posterior is computed
once, on the whole image, and cropped together with the image: a crop covers ``size``
cells of the image and its posterior covers ``halo`` = ``reach_cells`` more cells on each
side, so droplets centred just outside the crop still shade it (only the crop's own
pixels are scored). Crops sit on the cell lattice so image and posterior line up.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dropamort.config import ModelConfig
from dropamort.data.real import crop_positions
from dropamort.encoder.posterior import CatalogPosterior
from dropamort.objective import expected_log_likelihood
from dropamort.training.state import TrainState

OFF_LOGIT = -30.0  # Halo cells beyond the image hold no droplet.


def pad_posterior(post: CatalogPosterior, halo: int) -> CatalogPosterior:
  """A one-image posterior (numpy) with ``halo`` empty cells added on every side."""
  post = jax.tree.map(np.asarray, post)
  widths = lambda a: [(0, 0), (halo, halo), (halo, halo)] + [(0, 0)] * (a.ndim - 3)
  pad = lambda a, v: np.pad(a, widths(a), constant_values=v)
  edge = lambda a: np.pad(a, widths(a), mode="edge")  # The background field extends flat.
  return post.replace(
      bg_loc_BYXC=edge(post.bg_loc_BYXC), bg_scale_BYXC=edge(post.bg_scale_BYXC),
      on_logit_BYX=pad(post.on_logit_BYX, OFF_LOGIT),
      offset_loc_BYX2=pad(post.offset_loc_BYX2, 0.0),
      offset_scale_BYX2=pad(post.offset_scale_BYX2, 1.0),
      logr_loc_BYX=pad(post.logr_loc_BYX, 0.0),
      logr_scale_BYX=pad(post.logr_scale_BYX, 1.0), comp_loc_BYXT=pad(post.comp_loc_BYXT, 0.0),
      comp_scale_BYXT=pad(post.comp_scale_BYXT, 1.0))


def crop_batch(padded: list[CatalogPosterior], images: list[np.ndarray], weights, positions,
               *, size: int, halo: int, cell: int):
  """Posterior crops (size + 2·halo cells), image and weight crops (size cells) at
  ``positions`` (``data.real.crop_positions``); ``padded`` from ``pad_posterior``."""
  which, rows, cols = positions
  side = size + 2 * halo
  posts, crops, ws = [], [], []
  for i, r, c in zip(which, rows, cols):
    # In padded cells the crop's halo starts at (r, c).
    posts.append(jax.tree.map(
        lambda a: a[:, r:r + side, c:c + side] if a.ndim >= 3 else a, padded[i]))
    pixels = (slice(r * cell, (r + size) * cell), slice(c * cell, (c + size) * cell))
    crops.append(images[i][pixels])
    ws.append(weights[i][pixels])
  post = jax.tree.map(lambda *a: np.concatenate(a), *posts)
  return post, np.stack(crops).astype(np.float32), np.stack(ws).astype(np.float32)


def canvas_model(model: ModelConfig, size: int, halo: int) -> ModelConfig:
  """The model on a crop of ``size`` cells plus its halo (no margin, no shift)."""
  side = (size + 2 * halo) * model.cell
  return dataclasses.replace(model, height=side, width=side, margin=0, shift=False)


def make_wake_loss(model: ModelConfig, *, size: int, samples: int = 1):
  """``loss(trainable, key, posterior, images, weights)``: minus the expected
  log-likelihood of the crops, mean per crop; trainable = (decoder params, log sigma,
  outline) (``Prior.outline``: the drawn droplets' radii are scaled to their outline)."""
  halo = model.reach_cells
  canvas = canvas_model(model, size, halo)

  def loss_fn(trainable, key, posterior, images, weights):
    params, log_sigma, outline = trainable
    return -expected_log_likelihood(params, log_sigma, key, posterior, images, canvas,
                                    halo=halo, samples=samples, weights_BHW=weights,
                                    outline=outline)

  return loss_fn


def wake_trainable(state: TrainState):
  """What the wake step differentiates: (decoder params, log sigma, outline); the outline
  is held (set by ``training.outline.search``)."""
  return state.decoder_params, jnp.log(state.prior.noise_sigma), state.prior.outline


def fit_update(loss_fn, tx: optax.GradientTransformation, trainable, opt_state, key,
               posterior, images, weights, hold_edge):
  """One Adam step of ``loss_fn`` on trainable = (decoder params, log sigma, outline),
  traced: the outline is held, and the decoder's edge where ``hold_edge`` (a bool,
  traced or not); a non-finite objective or gradient changes nothing. Returns (trainable,
  opt_state, loss, finite)."""
  loss, grads = jax.value_and_grad(loss_fn)(trainable, key, posterior, images, weights)
  updates, new_opt = tx.update(grads, opt_state, trainable)
  params, log_sigma, _ = optax.apply_updates(trainable, updates)
  params = {**params, "edge": jnp.where(hold_edge, trainable[0]["edge"], params["edge"])}
  finite = jnp.isfinite(loss) & jnp.isfinite(optax.tree.norm(grads))
  keep = lambda a, b: jax.tree.map(lambda x, y: jnp.where(finite, x, y), a, b)
  return (keep((params, log_sigma, trainable[2]), trainable), keep(new_opt, opt_state),
          loss, finite)


def make_wake_step(model: ModelConfig, tx: optax.GradientTransformation, *, size: int,
                   samples: int = 1, sharp_edge: bool = False):
  """``wake_step(state, key, posterior, images, weights) -> (state, metrics)``, one jit.

  Maximizes the expected log-likelihood of the image crops over the decoder parameters
  and log sigma (``fit_update``), with catalogs drawn from the (fixed) posterior crops,
  their radii scaled by the state's outline (``Prior.outline``, held). With ``sharp_edge``
  the decoder's edge is held where it is (sharp, ``decoder.sharp``; for
  ``training.outline``'s search) except in a bootstrapped round; without, the edge is
  fitted. The step's key is ``fold_in(key, state.wake_step)``. A non-finite objective or
  gradient leaves the state unchanged (reported in the metrics), so a bad step cannot
  corrupt the decoder.
  """
  loss_fn = make_wake_loss(model, size=size, samples=samples)

  def wake_step(state: TrainState, key, posterior, images, weights):
    (params, log_sigma, line), opt_state, loss, finite = fit_update(
        loss_fn, tx, wake_trainable(state), state.wake_opt_state,
        jax.random.fold_in(key, state.wake_step), posterior, images, weights,
        sharp_edge & ~state.bootstrap)
    pixels = jnp.maximum(weights.sum(), 1.0) * images.shape[3] / images.shape[0]
    state = state.replace(decoder_params=params,
                          prior=state.prior.replace(noise_sigma=jnp.exp(log_sigma),
                                                    outline=line),
                          wake_opt_state=opt_state, wake_step=state.wake_step + 1,
                          updates=state.updates + 1)
    return state, {"loss": loss / pixels, "finite": finite, "sigma": jnp.exp(log_sigma)}

  return jax.jit(wake_step, donate_argnums=0)


class WakeViews:
  """The pyramid-level views of some real images, ready to crop (structure only): each
  view's image, its posterior padded with a halo of empty cells, and its pixel weights.
  Views smaller than a crop are left out. Crops are drawn uniformly over all views'
  positions (``levels="pixels"``: a level 2^k coarser is drawn 4^k times less often), or
  with every view's chance times its area in base image pixels (``"area"``: each level as
  often as the image area it covers, so the large droplets the coarse levels read are fitted
  as often as the image shows them)."""

  def __init__(self, views, size: int, halo: int, cell: int, levels: str = "pixels"):
    views = [v for v in views
             if v.image.shape[0] // cell >= size and v.image.shape[1] // cell >= size]
    self.size, self.halo, self.cell = size, halo, cell
    self.images = [v.image for v in views]
    self.weights = [v.weight for v in views]
    self.padded = [pad_posterior(v.posterior, halo) for v in views]
    self.grids = [(im.shape[0] // cell, im.shape[1] // cell) for im in self.images]
    self.chance = [v.factor**2 for v in views] if levels == "area" else None
    self.fixed = []

  def positions(self, key, n: int):
    """n crop positions drawn from ``key`` (``data.real.crop_positions``)."""
    return crop_positions(key, self.grids, n, self.size, self.chance)

  def batch(self, positions):
    """(posterior crops, image crops, weight crops) at ``positions``."""
    return crop_batch(self.padded, self.images, self.weights, positions, size=self.size,
                      halo=self.halo, cell=self.cell)

  def fix(self, positions, loss_fn, key, chunk: int) -> None:
    """Holds the crops at ``positions`` (in batches of ``chunk``) and the jitted
    ``loss_fn`` with which ``loss`` judges a state."""
    which, rows, cols = positions
    self.fixed = [self.batch((which[i:i + chunk], rows[i:i + chunk], cols[i:i + chunk]))
                  for i in range(0, len(which), chunk)]
    self.loss_fn, self.key = loss_fn, key

  def loss(self, state) -> float:
    """Minus the expected log-likelihood per scored pixel and channel of the fixed crops
    under the state's decoder and noise level (one fixed key: comparable across steps)."""
    trainable = wake_trainable(state)
    total = pixels = 0.0
    for post, crops, weights in self.fixed:
      total += float(self.loss_fn(trainable, self.key, post, crops, weights)) * len(crops)
      pixels += float(weights.sum()) * crops.shape[-1]
    return total / max(pixels, 1.0)
