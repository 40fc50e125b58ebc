"""The training step and validation pass (the jit boundaries of training)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax

from dropamort.config import TrainConfig
from dropamort.model.simulate import simulate
from dropamort.objective import npe_loss
from dropamort.training.parallel import replicated, shard_batch
from dropamort.training.state import TrainState, make_encoder


def make_train_step(cfg: TrainConfig, tx: optax.GradientTransformation, mesh=None):
  """``train_step(state, key) -> (state, metrics)``: simulate -> loss -> grad -> update.

  One jit with the state donated; configuration, encoder and optimizer are bound by
  closure. The step's randomness is ``fold_in(key, state.step)``, so a resumed run
  replays exactly the same batches. A non-finite loss skips the update and is counted.
  With a ``mesh`` (``parallel.batch_mesh``) the batch is split over its devices and the
  state, which the caller replicates, stays replicated.
  """
  encoder = make_encoder(cfg)
  sim = functools.partial(simulate, cfg=cfg.model, n=cfg.trainer.batch_size)

  def loss_fn(params, images, catalog):
    return npe_loss(encoder.apply({"params": params}, images), catalog)

  def train_step(state: TrainState, key):
    step_key = jax.random.fold_in(key, state.step)
    images, catalog = sim(step_key, state.decoder_params)
    if mesh is not None:
      images, catalog = shard_batch((images, catalog), mesh)
    loss, grads = jax.value_and_grad(loss_fn)(state.params, images, catalog)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    finite = jnp.isfinite(loss) & jnp.isfinite(optax.tree.norm(grads))
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)
    state = state.replace(step=state.step + 1, params=keep(params, state.params),
                          opt_state=keep(opt_state, state.opt_state),
                          nonfinite=state.nonfinite + (~finite).astype(jnp.int32))
    return state, {"loss": loss, "finite": finite, "grad_norm": optax.tree.norm(grads)}

  if mesh is None:
    return jax.jit(train_step, donate_argnums=0)
  rep = replicated(mesh)
  return jax.jit(train_step, donate_argnums=0, in_shardings=(rep, rep),
                 out_shardings=(rep, rep))


def make_posterior_fn(cfg: TrainConfig):
  """``posterior(params, images) -> CatalogPosterior`` (jitted)."""
  encoder = make_encoder(cfg)
  return jax.jit(lambda params, images: encoder.apply({"params": params}, images))

