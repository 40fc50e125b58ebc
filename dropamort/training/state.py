"""The training state (one immutable pytree) and the objects that give it structure."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from dropamort.config import OptimConfig, TrainConfig
from dropamort.encoder.cnn import make_encoder
from dropamort.model.decoder import init_params, load_params


@flax.struct.dataclass
class TrainState:
  step: jnp.ndarray
  params: Any  # Encoder parameters (optimized).
  opt_state: Any
  decoder_params: Any  # Optics decoder parameters (fixed while training the encoder).
  nonfinite: jnp.ndarray  # Steps whose update was skipped for a non-finite loss.


def make_optimizer(cfg: OptimConfig, steps: int) -> optax.GradientTransformation:
  """AdamW, warm-up + cosine decay, global-norm clipping."""
  schedule = optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=cfg.lr, warmup_steps=min(cfg.warmup_steps, steps - 1),
      decay_steps=max(steps, 1), end_value=cfg.lr * cfg.end_lr_fraction)
  return optax.chain(optax.clip_by_global_norm(cfg.clip_norm),
                     optax.adamw(schedule, weight_decay=cfg.weight_decay))


def init_state(key, cfg: TrainConfig, tx: optax.GradientTransformation,
               decoder_params=None) -> TrainState:
  """A fresh state; the decoder parameters are read from ``model.decoder_params`` unless
  given."""
  m = cfg.model
  encoder = make_encoder(cfg)
  dummy = jnp.zeros((1, m.height, m.width, m.channels))
  params = encoder.init(key, dummy)["params"]
  if decoder_params is None:
    decoder_params = load_params(m.decoder_params, m.channels, m.types, m.decoder_hidden)
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                    decoder_params=decoder_params, nonfinite=jnp.zeros((), jnp.int32))


def abstract_state(cfg: TrainConfig, tx) -> TrainState:
  """Shapes and dtypes of the state, for restoring without computing it (reads no files:
  a checkpoint carries its own decoder parameters)."""
  m = cfg.model
  key = jax.random.key(0)
  return jax.eval_shape(lambda: init_state(key, cfg, tx, decoder_params=init_params(
      key, m.channels, m.types, m.decoder_hidden)))
