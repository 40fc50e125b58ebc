"""The trainer: built once per run; its stages are functions over the training state.

Built once: the jitted sleep and wake steps, the posterior function, the run's checkpoint
managers, the one fixed simulated validation set and (when calibrating) the real images.
Stages (``sleep``, ``wake``, ``refit_prior``, ``end_round``) take a state and return the
next; each checkpoints when it ends, so a run resumed from any checkpoint replays exactly
what an uninterrupted one does. Every random draw is ``fold_in`` of the run's seed key:
stream, then round, then step.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from dropamort.checkpoint import RunCheckpoints
from dropamort.config import TrainConfig
from dropamort.data.real import crop_positions
from dropamort.encoder.cnn import make_encoder
from dropamort.errors import UserError
from dropamort.model.decoder import load_params
from dropamort.parallel import batch_mesh, replicate
from dropamort.training.bootstrap import blob_posterior, log_blobs
from dropamort.training.prior_fit import fit_prior, stats_of
from dropamort.training.real import RealImages, radii_and_area
from dropamort.training.report import MetricsLog
from dropamort.training.state import (DONE, REFIT, SLEEP, STAGE_NAMES, WAKE, abstract_init,
                                      init_state, make_optimizer, make_wake_optimizer, rounds,
                                      total_steps)
from dropamort.training.step import make_posterior_fn, make_sleep_step
from dropamort.training.validate import validate, validation_set
from dropamort.training.wake import crop_batch, make_wake_step, pad_posterior

STREAMS = ("init", "sleep", "wake", "crops", "refit")  # Key streams: fold_in(seed key, i).


class NonFiniteLoss(UserError, RuntimeError):
  """Training produced non-finite losses for too many steps in a row."""


class WakeFailed(UserError, RuntimeError):
  """Every step of a wake stage was non-finite; the last checkpoint is kept."""


class Preempted(RuntimeError):
  """SIGTERM arrived: a checkpoint of the last finished step was saved; run again to resume."""


class _StopOnSigterm:
  """Turns SIGTERM (a scheduler's preemption notice) into a flag checked between steps.
  Only the main thread can install signal handlers; elsewhere it does nothing."""

  def __enter__(self):
    self.received = False
    self._previous = None
    if threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def _handle(self, signum, frame):
    self.received = True

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


def sleep_target(cfg: TrainConfig, round_: int) -> int:
  """Encoder steps done at the end of ``round_``'s sleep stage."""
  return cfg.trainer.steps + round_ * cfg.calibrate.sleep_steps


class Trainer:
  """One run's fixed machinery (structure only; the state is passed in and out)."""

  def __init__(self, cfg: TrainConfig, run_dir: str):
    t, m = cfg.trainer, cfg.model
    self.cfg, self.run_dir = cfg, os.path.abspath(run_dir)
    os.makedirs(self.run_dir, exist_ok=True)
    self.primary = jax.process_index() == 0  # Multi-host: one process reports and draws.
    self.say = tqdm.write if self.primary else (lambda *_: None)
    self.ckpt = RunCheckpoints(self.run_dir, t.best_metric)
    self.ckpt.check_compatible(cfg)  # Before anything is built from the new config.
    self.tx = make_optimizer(cfg.optim, total_steps(cfg))
    self.wake_tx = make_wake_optimizer(cfg.calibrate.wake_lr)
    base = jax.random.key(t.seed)
    self.keys = {name: jax.random.fold_in(base, i) for i, name in enumerate(STREAMS)}
    encoder = make_encoder(cfg.encoder, m)
    self.mesh = batch_mesh(t.batch_size) if t.data_parallel and jax.device_count() > 1 else None
    self.sleep_step = make_sleep_step(m, encoder, self.tx, t.batch_size, self.mesh)
    self.posterior_fn = make_posterior_fn(encoder)
    # The one validation set: the configured model and decoder, fixed for the whole run.
    self.val_images, self.val_catalog = validation_set(
        m, load_params(m.decoder_params, m.channels, m.types, m.decoder_hidden),
        images=t.val_images, seed=t.val_seed, data_dir=os.path.join(self.run_dir, "val_data"))
    self.real = RealImages(cfg.data, m, cfg.calibrate) if rounds(cfg) else None
    if self.real is not None:
      self.wake_step = make_wake_step(m, self.wake_tx, size=cfg.calibrate.wake_crop // m.cell,
                                      samples=cfg.calibrate.wake_samples)
    self.log = MetricsLog(os.path.join(self.run_dir, "metrics.jsonl"))
    self.rounds_log = MetricsLog(os.path.join(self.run_dir, "calibration.jsonl"))
    self.last_metrics, self.last_record = None, None

  # -- state ----------------------------------------------------------------------------

  def initial_state(self):
    """(state, resumed): the latest checkpoint's state, or a fresh one at round 0."""
    fresh = abstract_init(self.cfg, self.tx, self.wake_tx)
    state, missing = self.ckpt.restore_latest(fresh, self.cfg)
    resumed = state is not None
    if state is None:
      state = init_state(self.keys["init"], self.cfg, self.tx, self.wake_tx)
    elif "updates" in missing:  # An older checkpoint: it counted encoder steps only.
      state = state.replace(updates=state.step)
    if resumed and int(state.stage) == DONE and int(state.round) <= rounds(self.cfg):
      # A finished run asked for (more) calibration rounds: go on with the next one.
      state = state.replace(stage=jnp.int32(WAKE), wake_step=jnp.int32(0))
    if self.mesh is not None:
      state = self._place(state)
      self.say(f"data parallel over {self.mesh.size} devices "
               f"({self.cfg.trainer.batch_size // self.mesh.size} images each)")
    return state, resumed

  def _save(self, state) -> None:
    self.ckpt.save(state, self.cfg)

  def _place(self, state):
    """Values set on the host (counters, a refit prior) back onto the mesh, as the rest
    of the state is: multi-host checkpoints need every array global."""
    return state if self.mesh is None else replicate(state, self.mesh)

  def _where(self, state) -> dict:
    return {"round": int(state.round), "stage": STAGE_NAMES[int(state.stage)]}

  # -- sleep ----------------------------------------------------------------------------

  def sleep(self, state, until: int):
    """Encoder steps on simulations up to ``until``: logs, validates (the ``best``
    checkpoint competes in round 0 only), checkpoints."""
    t = self.cfg.trainer
    start = int(state.step)
    bar = tqdm(total=until, initial=start, disable=not (t.progress and self.primary),
               unit="step", dynamic_ncols=True, desc=f"round {int(state.round)} sleep")
    in_a_row, t_mark, step_mark = 0, time.perf_counter(), start
    with _StopOnSigterm() as sigterm:
      for _ in range(start, until):
        state, m = self.sleep_step(state, self.keys["sleep"])
        loss, finite = float(m["loss"]), bool(m["finite"])
        done = int(state.step)
        in_a_row = 0 if finite else in_a_row + 1
        if not finite:
          self._nonfinite(done, loss, in_a_row)
        bar.update(1)
        if done % t.log_every == 0 or done == until:
          now = time.perf_counter()
          rate = (done - step_mark) / (now - t_mark)
          t_mark, step_mark = now, done
          bar.set_postfix(loss=f"{loss:.1f}", steps_per_s=f"{rate:.1f}")
          self.log.write(step=done, loss=loss, grad_norm=float(m["grad_norm"]),
                         steps_per_s=rate, **self._where(state))
        metrics = self._validate(state, done) if (
            done % t.val_every == 0 or done == until) else None
        if metrics is not None or done % t.checkpoint_every == 0:
          self._save(state)
        if metrics is not None and int(state.round) == 0:
          # After `latest`: multi-host saves must run in the same order on every process.
          self.ckpt.save_best(state, self.cfg, metrics)
        if sigterm.received:
          self._preempted(state, bar, f"step {done}")
    bar.close()
    return state

  def _nonfinite(self, done: int, loss: float, in_a_row: int) -> None:
    self.say(f"step {done}: non-finite loss ({loss}); update skipped")
    self.log.write(step=done, event="nonfinite", loss=str(loss))
    if in_a_row >= self.cfg.trainer.max_nonfinite:
      self.ckpt.close()
      raise NonFiniteLoss(f"non-finite loss at step {done} ({in_a_row} steps in a row); "
                          f"the last good checkpoint is in {self.ckpt.directory}")

  def _validate(self, state, done: int) -> dict:
    metrics = self.validate(state)
    self.log.write(step=done, event="validation", **self._where(state), **metrics)
    self.say(f"step {done}: validation F1 {metrics['f1']:.3f}, NLL {metrics['nll']:.1f}")
    return metrics

  def validate(self, state) -> dict:
    """Metrics of the state's encoder on the fixed validation set."""
    self.last_metrics = validate(self.posterior_fn, state.params, self.val_images,
                                 self.val_catalog, cell=self.cfg.model.cell,
                                 threshold=self.cfg.trainer.threshold)
    return self.last_metrics

  def _preempted(self, state, bar, where: str):
    self._save(state)
    self.ckpt.close()
    bar.close()
    self.log.write(step=int(state.step), event="sigterm", **self._where(state))
    raise Preempted(f"SIGTERM: stopped after {where}; checkpoint saved in "
                    f"{self.ckpt.directory}; run the same command again to resume")

  # -- wake -----------------------------------------------------------------------------

  def wake(self, state, steps: int | None = None):
    """The wake stage of the state's round: decoder and noise on crops of the fitted
    real images; ``steps`` stops it early (for tests), else it runs to its end."""
    c, m = self.cfg.calibrate, self.cfg.model
    r = int(state.round)
    if int(state.wake_step) == 0:  # The stage starts: fresh optimizer, bootstrap or not.
      state = self._start_wake(state)
    posts = self._wake_posteriors(state)
    halo, size = m.reach_cells, c.wake_crop // m.cell
    padded = [pad_posterior(p, halo) for p in posts]
    grids = self.real.grids(self.real.fitted)
    wake_key, crop_key = (jax.random.fold_in(self.keys[s], r) for s in ("wake", "crops"))
    end = c.wake_steps if steps is None else min(c.wake_steps, int(state.wake_step) + steps)
    bad, start = 0, int(state.wake_step)
    bar = tqdm(total=c.wake_steps, initial=start, desc=f"round {r} wake", leave=False,
               disable=not (self.cfg.trainer.progress and self.primary))
    with _StopOnSigterm() as sigterm:
      for i in range(start, end):
        positions = crop_positions(jax.random.fold_in(crop_key, i), grids, c.wake_batch, size)
        post, crops = crop_batch(padded, self.real.fitted, positions, size=size, halo=halo,
                                 cell=m.cell)
        state, metrics = self.wake_step(state, wake_key, post, crops)
        bad += int(not bool(metrics["finite"]))
        bar.update(1)
        if sigterm.received:
          self._preempted(state, bar, f"wake step {i + 1} of round {r}")
    bar.close()
    if end > start and bad == end - start:
      raise WakeFailed(f"round {r}: every wake step was non-finite; the last checkpoint "
                       f"({self.ckpt.directory}) is kept")
    if int(state.wake_step) >= c.wake_steps:
      state = self._place(state.replace(stage=jnp.int32(REFIT), updates=state.updates + 1))
      self.rounds_log.write(event="wake", round=r, loss_per_pixel=float(metrics["loss"]),
                            noise_sigma=float(state.prior.noise_sigma),
                            nonfinite_steps=bad, bootstrap=bool(state.bootstrap))
    self._save(state)
    return state

  def _start_wake(self, state):
    """Fresh wake optimizer; in round 1, LoG blobs stand in for an encoder that finds
    fewer than ``calibrate.min_found`` of them."""
    bootstrap = False
    if int(state.round) == 1:
      posts = self.real.posteriors(self.posterior_fn, state.params, self.real.fitted)
      found = len(radii_and_area(posts, self.real.fitted, self.cfg.model.cell,
                                 self.cfg.trainer.threshold)[0])
      blobs = sum(len(log_blobs(im, self.cfg.model.radius_max)[0]) for im in self.real.fitted)
      bootstrap = found < self.cfg.calibrate.min_found * blobs
    trainable = (state.decoder_params, jnp.log(state.prior.noise_sigma))
    return self._place(state.replace(wake_opt_state=self.wake_tx.init(trainable),
                                     bootstrap=jnp.asarray(bootstrap)))

  def _wake_posteriors(self, state):
    m = self.cfg.model
    if bool(state.bootstrap):
      return [blob_posterior(im, m.cell, m.radius_max, m.types) for im in self.real.fitted]
    return self.real.posteriors(self.posterior_fn, state.params, self.real.fitted)

  # -- refit and round end --------------------------------------------------------------

  def refit_prior(self, state):
    """Empirical-Bayes refit of density and radius distribution to the catalogs the
    encoder reads on the fitted real images."""
    prior, m = state.prior, self.cfg.model
    if self.cfg.calibrate.refit_prior:
      posts = self.real.posteriors(self.posterior_fn, state.params, self.real.fitted)
      radii, area = radii_and_area(posts, self.real.fitted, m.cell, self.cfg.trainer.threshold)
      if len(radii) > 10:
        prior = fit_prior(jax.random.fold_in(self.keys["refit"], int(state.round)),
                          stats_of(radii, area), m, prior)
    state = self._place(state.replace(prior=prior, stage=jnp.int32(SLEEP),
                                      updates=state.updates + 1))
    self._save(state)
    return state

  def end_round(self, state):
    """Records the round on the held-out real images (when calibrating), offers the state
    to ``calibrated``, and moves on to the next round (or DONE)."""
    r = int(state.round)
    record = None
    if self.real is not None:
      posts = self.real.posteriors(self.posterior_fn, state.params, self.real.held_out)
      record = self.real.record(self.cfg.model, state.decoder_params, posts,
                                self.cfg.trainer.threshold)
      record.update(round=r, step=int(state.step), **state.prior.summary())
      self.rounds_log.write(event="round", **record)
      self.last_record = record
      self.say(f"round {r}: held-out real RMSE {record['real_rmse']:.4f} (flat colour "
               f"{record['flat_rmse']:.4f}), {record['count_per_image']:.0f} droplets/image, "
               f"noise sigma {record['noise_sigma']:.4f}, density {record['density']:.4f}, "
               f"log r ~ N({record['radius_loc']:.2f}, {record['radius_scale']:.2f})")
    nxt = r + 1
    state = self._place(state.replace(
        round=jnp.int32(nxt), stage=jnp.int32(WAKE if nxt <= rounds(self.cfg) else DONE),
        wake_step=jnp.int32(0), updates=state.updates + 1))
    self._save(state)
    if record is not None:
      self.ckpt.save_calibrated(state, self.cfg, record)
    return state

  def close(self) -> None:
    self.ckpt.close()
