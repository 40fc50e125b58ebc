"""The training state: one immutable pytree for simulation training and calibration alike.

Training on simulations is calibration with zero wake rounds. Where a run stands is in
the state itself (``round`` and ``stage``, with step counters), so a run resumed from any
checkpoint continues exactly where it stopped:

    round 0:        SLEEP to trainer.steps encoder steps
    round r >= 1:   WAKE (decoder and noise on real images) -> REFIT (prior) ->
                    SLEEP to trainer.steps + r·calibrate.sleep_steps
    then            DONE
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from dropamort.config import OptimConfig, TrainConfig
from dropamort.encoder.cnn import make_encoder
from dropamort.model.decoder import init_params
from dropamort.model.model import configured_decoder_params
from dropamort.model.prior import Prior

# Stages of a round, in order.
WAKE, REFIT, SLEEP, DONE = 0, 1, 2, 3
STAGE_NAMES = {WAKE: "wake", REFIT: "refit", SLEEP: "sleep", DONE: "done"}


@flax.struct.dataclass
class TrainState:
  step: jnp.ndarray  # Encoder (sleep) steps done, over the whole run.
  params: Any  # Encoder parameters.
  opt_state: Any  # Encoder optimizer state.
  decoder_params: Any  # Optics decoder parameters (fitted in the wake stage).
  prior: Prior  # Fitted prior and noise level (refit in the refit stage).
  round: jnp.ndarray  # Current round: 0 is simulation training, then calibration rounds.
  stage: jnp.ndarray  # WAKE, REFIT, SLEEP or DONE within the round.
  wake_step: jnp.ndarray  # Steps done in this round's wake stage.
  wake_opt_state: Any  # The wake optimizer's state (decoder parameters, log sigma, outline).
  # Early stopping of the wake stage on held-out crops: the best held-out loss so far, the
  # evaluations since, and the decoder and noise level that reached it. ``best_outline``
  # is no longer tracked (the wake holds the outline since the outline search replaced
  # its gradient fit); the field keeps the checkpoint layout of runs made with that fit.
  wake_best: jnp.ndarray
  wake_since: jnp.ndarray
  best_decoder_params: Any
  best_noise_sigma: jnp.ndarray
  best_outline: jnp.ndarray
  bootstrap: jnp.ndarray  # This round's wake reads LoG blobs instead of the encoder.
  nonfinite: jnp.ndarray  # Encoder steps whose update was skipped (non-finite loss).
  updates: jnp.ndarray  # State changes so far (steps of either kind, refits, round ends):
  # names the checkpoints, so states at one encoder step but another stage never collide.


def make_optimizer(cfg: OptimConfig, steps: int) -> optax.GradientTransformation:
  """AdamW, warm-up + cosine decay over ``steps``, global-norm clipping."""
  schedule = optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=cfg.lr, warmup_steps=min(cfg.warmup_steps, steps - 1),
      decay_steps=max(steps, 1), end_value=cfg.lr * cfg.end_lr_fraction)
  return optax.chain(optax.clip_by_global_norm(cfg.clip_norm),
                     optax.adamw(schedule, weight_decay=cfg.weight_decay))


def make_wake_optimizer(lr: float) -> optax.GradientTransformation:
  """Adam on (decoder parameters, log sigma, outline); the wake holds the outline."""
  return optax.adam(lr)


def total_steps(cfg: TrainConfig) -> int:
  """Encoder steps of the whole run (the schedule's length)."""
  return cfg.trainer.steps + rounds(cfg) * cfg.calibrate.sleep_steps


def rounds(cfg: TrainConfig) -> int:
  """Calibration rounds: none without real images."""
  return 0 if cfg.data.real is None else cfg.calibrate.rounds


def init_state(key, cfg: TrainConfig, tx: optax.GradientTransformation, wake_tx,
               decoder_params=None) -> TrainState:
  """A fresh state at round 0; the decoder parameters are read from
  ``model.decoder_params`` unless given, the prior starts at the configured values."""
  m = cfg.model
  params = make_encoder(cfg.encoder, m).init(
      key, jnp.zeros((1, m.height, m.width, m.channels)))["params"]
  if decoder_params is None:
    decoder_params = configured_decoder_params(m)
  prior = Prior.from_config(m)
  i32 = lambda v: jnp.asarray(v, jnp.int32)
  return TrainState(step=i32(0), params=params, opt_state=tx.init(params),
                    decoder_params=decoder_params, prior=prior, round=i32(0),
                    stage=i32(SLEEP), wake_step=i32(0),
                    wake_opt_state=wake_tx.init((decoder_params, jnp.log(prior.noise_sigma),
                                                 prior.outline)),
                    wake_best=jnp.asarray(jnp.inf, jnp.float32), wake_since=i32(0),
                    # Copies: a donated state must not hold one buffer twice.
                    best_decoder_params=jax.tree.map(jnp.copy, decoder_params),
                    best_noise_sigma=jnp.copy(prior.noise_sigma),
                    best_outline=jnp.copy(prior.outline),
                    bootstrap=jnp.asarray(False), nonfinite=i32(0), updates=i32(0))


def abstract_init(cfg: TrainConfig, tx, wake_tx) -> TrainState:
  """A fresh state without reading any file (random decoder parameters): a checkpoint
  carries its own."""
  m = cfg.model
  key = jax.random.key(0)
  return init_state(key, cfg, tx, wake_tx, decoder_params=init_params(
      key, m.channels, m.types, m.decoder_hidden, m.appearance))
