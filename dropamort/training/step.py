"""The sleep step and the posterior function (jit boundaries of training)."""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from dropamort.config import ModelConfig
from dropamort.model.simulate import simulate
from dropamort.objective import npe_loss
from dropamort.parallel import replicated, shard_batch
from dropamort.training.state import TrainState


def make_sleep_step(model: ModelConfig, encoder: nn.Module, tx: optax.GradientTransformation,
                    batch_size: int, mesh=None):
  """``sleep_step(state, key) -> (state, metrics)``: simulate -> loss -> grad -> update.

  One jit with the state donated; the model's structure, the encoder and the optimizer are
  bound by closure; the decoder parameters and the prior come from the state, so a
  calibration round that changes them does not recompile. The step's randomness is
  ``fold_in(key, state.step)``, so a resumed run replays exactly the same batches. A
  non-finite loss skips the update and is counted. With a ``mesh``
  (``parallel.batch_mesh``) the batch is split over its devices and the state, which the
  caller replicates, stays replicated.
  """
  sim = functools.partial(simulate, cfg=model, n=batch_size)

  def loss_fn(params, images, catalog):
    return npe_loss(encoder.apply({"params": params}, images), catalog)

  def sleep_step(state: TrainState, key):
    images, catalog = sim(jax.random.fold_in(key, state.step), state.decoder_params,
                          state.prior)
    if mesh is not None:
      images, catalog = shard_batch((images, catalog), mesh)
    loss, grads = jax.value_and_grad(loss_fn)(state.params, images, catalog)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    finite = jnp.isfinite(loss) & jnp.isfinite(optax.tree.norm(grads))
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)
    state = state.replace(step=state.step + 1, params=keep(params, state.params),
                          opt_state=keep(opt_state, state.opt_state),
                          nonfinite=state.nonfinite + (~finite).astype(jnp.int32),
                          updates=state.updates + 1)
    return state, {"loss": loss, "finite": finite, "grad_norm": optax.tree.norm(grads)}

  if mesh is None:
    return jax.jit(sleep_step, donate_argnums=0)
  rep = replicated(mesh)
  return jax.jit(sleep_step, donate_argnums=0, in_shardings=(rep, rep),
                 out_shardings=(rep, rep))


def make_posterior_fn(encoder: nn.Module):
  """``posterior(params, images) -> CatalogPosterior`` (jitted)."""
  return jax.jit(lambda params, images: encoder.apply({"params": params}, images))
