"""The trainer: built once per run; its stages are functions over the training state.

Built once: the jitted sleep and wake steps, the posterior function, the run's checkpoint
managers, the one fixed simulated validation set and (when calibrating) the real images.
Stages (``sleep``, ``wake``, ``refit_prior``, ``end_round``) take a state and return the
next; each checkpoints when it ends, so a run resumed from any checkpoint replays exactly
what an uninterrupted one does. Every random draw is ``fold_in`` of the run's seed key:
stream, then round, then step.
"""

from __future__ import annotations

import math
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
from dropamort.encoder.cnn import make_encoder
from dropamort.errors import UserError
from dropamort.model.decoder import edge_width, sharp
from dropamort.model.model import configured_decoder_params
from dropamort.model.prior import IDENTITY_EDGE, is_identity
from dropamort.parallel import batch_mesh, replicate
from dropamort.pyramid import Encoding, pad_to_cells
from dropamort.training import outline, polish, start
from dropamort.training.bootstrap import blob_posterior, log_blobs
from dropamort.training.budget import TimeBudget
from dropamort.training.edge import edge_map
from dropamort.training.prior_fit import fit_background, fit_prior, stats_of
from dropamort.training.real import RealImages, band_stats
from dropamort.training.report import MetricsLog
from dropamort.training.state import (DONE, REFIT, SLEEP, STAGE_NAMES, WAKE, abstract_init,
                                      init_state, make_optimizer, make_wake_optimizer, rounds,
                                      total_steps)
from dropamort.training.step import make_posterior_fn, make_sleep_step
from dropamort.training.validate import validate, validation_set
from dropamort.training.wake import WakeViews, make_wake_loss, make_wake_step, wake_trainable

# Key streams: fold_in(seed key, i).
STREAMS = ("init", "sleep", "wake", "crops", "refit", "heldout", "widen", "outline",
           "polish")


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
    self.posterior_fn = make_posterior_fn(encoder)  # Simulated validation batches.
    # Real images are read as inference reads them: pyramid, tiles, batches (on one
    # device; the state's parameters may be replicated over the training mesh).
    self.encoding = Encoding(encoder, m.cell, devices=jax.local_devices()[:1])
    # The one validation set: the configured model and decoder, fixed for the whole run.
    self.val_images, self.val_catalog = validation_set(
        m, configured_decoder_params(m),
        images=t.val_images, seed=t.val_seed, data_dir=os.path.join(self.run_dir, "val_data"))
    self.real = RealImages(cfg.data, m, cfg.calibrate) if rounds(cfg) else None
    if self.real is not None:
      if self.real.note:
        self.say(self.real.note)
      size, samples = cfg.calibrate.wake_crop // m.cell, cfg.calibrate.wake_samples
      self.wake_step = make_wake_step(m, self.wake_tx, size=size, samples=samples,
                                      sharp_edge=cfg.calibrate.outline)
      self.wake_loss = jax.jit(make_wake_loss(m, size=size, samples=samples))
      if cfg.calibrate.outline:
        self.refit_step = outline.make_refit_step(m, self.wake_tx, size=size, samples=samples)
    self.start_dir = start.START_DIR  # Where the packaged round 0 lies (tests point elsewhere).
    self.log = MetricsLog(os.path.join(self.run_dir, "metrics.jsonl"))
    self.rounds_log = MetricsLog(os.path.join(self.run_dir, "calibration.jsonl"))
    self.last_metrics, self.last_record = None, None
    self.budget = TimeBudget(cfg.time_budget)
    self.last_round = rounds(cfg)  # Earlier when the time budget ends the calibration.

  # -- state ----------------------------------------------------------------------------

  def initial_state(self):
    """(state, resumed): the latest checkpoint's state, or a fresh one at round 0."""
    fresh = abstract_init(self.cfg, self.tx, self.wake_tx)
    state = self.ckpt.restore_latest(fresh, self.cfg)
    resumed = state is not None
    if state is None:
      state = init_state(self.keys["init"], self.cfg, self.tx, self.wake_tx)
      if rounds(self.cfg):
        state = self._packaged_start(state)
    if resumed and int(state.stage) == DONE and int(state.round) <= rounds(self.cfg):
      # A finished run asked for (more) calibration rounds: go on with the next one.
      state = state.replace(stage=jnp.int32(WAKE), wake_step=jnp.int32(0))
    if self.mesh is not None:
      state = self._place(state)
      self.say(f"data parallel over {self.mesh.size} devices "
               f"({self.cfg.trainer.batch_size // self.mesh.size} images each)")
    return state, resumed

  def _packaged_start(self, fresh):
    """The packaged end of round 0's sleep stage (``training.start``) when this run's
    configuration is the one it was made with, else ``fresh``; says which in one line."""
    diffs = start.differences(self.cfg, self.start_dir)
    if diffs is None:
      return fresh
    state = None if diffs else start.restore(fresh, self.start_dir)
    ok = state is not None and int(state.step) == sleep_target(self.cfg, 0) and int(
        state.stage) == SLEEP and int(state.round) == 0
    if not ok:
      why = (f"{', '.join(diffs[:4])} differ" if diffs
             else "the default decoder changed since it was made")
      self.say(f"round 0 (simulations only) is trained here: the packaged start does not "
               f"apply ({why})")
      return fresh
    self.say(f"round 0 (simulations only, {int(state.step)} steps) taken from the packaged "
             f"start, made with this configuration (dropamort/training/start.py)")
    self.log.write(step=int(state.step), event="packaged_start", **self._where(state))
    return state

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
    """The wake stage of the state's round: decoder and noise on crops of every pyramid
    level of the fitted real images, until the loss on fixed held-out crops stops
    improving (the best decoder is kept) or ``calibrate.wake_steps``; ``steps`` stops it
    early (for tests)."""
    c = self.cfg.calibrate
    r = int(state.round)
    if int(state.wake_step) == 0:  # The stage starts: fresh optimizer, bootstrap or not.
      state = self._start_wake(state)
    train, held, read_held = self._wake_views(state)
    wake_key, crop_key = (jax.random.fold_in(self.keys[s], r) for s in ("wake", "crops"))
    over = lambda st: (int(st.wake_step) >= c.wake_steps
                       or int(st.wake_since) >= c.wake_patience)
    end = c.wake_steps if steps is None else min(c.wake_steps, int(state.wake_step) + steps)
    bad, start, metrics = 0, int(state.wake_step), {}
    if over(state):  # Resumed at the stage's end (stopped during the outline search).
      end = start
    bar = tqdm(total=c.wake_steps, initial=start, desc=f"round {r} wake", leave=False,
               disable=not (self.cfg.trainer.progress and self.primary))
    with _StopOnSigterm() as sigterm:
      for i in range(start, end):
        positions = train.positions(jax.random.fold_in(crop_key, i), c.wake_batch)
        state, metrics = self.wake_step(state, wake_key, *train.batch(positions))
        bad += int(not bool(metrics["finite"]))
        bar.update(1)
        if (i + 1) % c.wake_eval_every == 0 or i + 1 == c.wake_steps:
          state = self._wake_checkpoint(state, held)
          bar.set_postfix(held_out=f"{float(state.wake_best):.4f}")
        if sigterm.received:
          self._preempted(state, bar, f"wake step {i + 1} of round {r}")
        if int(state.wake_since) >= c.wake_patience:
          break
    bar.close()
    if end > start and bad == int(state.wake_step) - start:
      raise WakeFailed(f"round {r}: every wake step was non-finite; the last checkpoint "
                       f"({self.ckpt.directory}) is kept")
    if over(state):
      if c.outline and not bool(state.bootstrap):
        self._save(state)  # A stop during the search then replays the search alone.
      state = self._end_wake(state, bad, train, read_held)
    self._save(state)
    return state

  def _wake_checkpoint(self, state, held):
    """Early stopping: the held-out loss of the current decoder, kept if the best."""
    loss, best = held.loss(state), float(state.wake_best)
    better = not np.isfinite(best) or loss < best - 1e-4 * abs(best)
    if better:
      state = state.replace(wake_best=jnp.float32(loss), wake_since=jnp.int32(0),
                            best_decoder_params=jax.tree.map(jnp.copy, state.decoder_params),
                            best_noise_sigma=jnp.copy(state.prior.noise_sigma))
    else:
      state = state.replace(wake_since=state.wake_since + 1)
    self.rounds_log.write(event="wake_eval", round=int(state.round),
                          wake_step=int(state.wake_step), held_out_loss=loss)
    return self._place(state)

  def _end_wake(self, state, bad: int, train, read_held):
    """The best decoder and noise level of the stage; with ``calibrate.outline`` (not in
    a bootstrapped round) the outline's radius scale searched from them (``_outline``);
    on to the refit."""
    state = state.replace(decoder_params=jax.tree.map(jnp.copy, state.best_decoder_params),
                          prior=state.prior.replace(noise_sigma=jnp.copy(state.best_noise_sigma)))
    if self.cfg.calibrate.outline and not bool(state.bootstrap):
      state = self._outline(state, train, read_held)
    state = state.replace(stage=jnp.int32(REFIT), updates=state.updates + 1)
    self.rounds_log.write(event="wake", round=int(state.round),
                          steps=int(state.wake_step), held_out_loss=float(state.wake_best),
                          noise_sigma=float(state.prior.noise_sigma), nonfinite_steps=bad,
                          bootstrap=bool(state.bootstrap),
                          outline_scale=math.exp(float(state.prior.outline)),
                          edge_px=edge_width(state.decoder_params))
    return self._place(state)

  def _outline(self, state, train, read_held):
    """``training.outline.search`` from the stage's decoder (edge sharp): the state takes
    the best candidate's decoder, noise level and scale; every candidate is logged."""
    c, r = self.cfg.calibrate, int(state.round)
    self.say(f"round {r}: searching where the images put droplets' outlines")
    log_s, params, log_sigma, rows = self._until_sigterm(
        state, lambda stop: outline.search(
            self.real, train, read_held, state.decoder_params,
            jnp.log(state.prior.noise_sigma), jax.random.fold_in(self.keys["outline"], r),
            tx=self.wake_tx, step=self.refit_step, steps=c.outline_steps, batch=c.wake_batch,
            threshold=self.cfg.trainer.threshold, say=self.say, stop=stop),
        outline.Stopped, f"the outline search of round {r}; the wake's end")
    for row in rows:
      self.rounds_log.write(event="outline", round=r, **row)
    self.say(f"round {r}: the images put droplets' outlines at {math.exp(log_s):.3f} × "
             f"the read radius")
    return state.replace(decoder_params=params, prior=state.prior.replace(
        noise_sigma=jnp.exp(log_sigma), outline=jnp.asarray(log_s, jnp.float32)))

  def _until_sigterm(self, state, run, stopped: type, what: str):
    """``run(stop)``, ``stop()`` turning true once SIGTERM arrives; ``run`` then raises
    ``stopped``, which becomes ``Preempted``: the last checkpoint (``what`` names the work
    and what that checkpoint holds) is kept, and a resumed run does the work again."""
    with _StopOnSigterm() as sigterm:
      try:
        return run(lambda: sigterm.received)
      except stopped:
        self.ckpt.close()
        self.log.write(step=int(state.step), event="sigterm", **self._where(state))
        raise Preempted(f"SIGTERM: stopped during {what} is saved in "
                        f"{self.ckpt.directory}; run the same command again to resume") from None

  def _start_wake(self, state):
    """Fresh wake optimizer and early stopping; in round 1, LoG blobs stand in for an
    encoder that finds fewer than ``calibrate.min_found`` of them (at the base level).
    The outline is reset (the encoder now reads the last search's outline); with
    ``calibrate.outline`` the decoder's edge is made sharp (``decoder.sharp``) unless
    the round is bootstrapped (LoG radii follow no outline convention)."""
    bootstrap = False
    if int(state.round) == 1:
      m, thr = self.cfg.model, self.cfg.trainer.threshold
      read = self.real.read(self._encoder(state), self.real.fitted)
      found = sum(int(np.sum(lv[0].posterior.p_BYX > thr)) for lv in read)
      blobs = sum(len(log_blobs(im, m.radius_max)[0]) for im in self.real.fitted)
      bootstrap = found < self.cfg.calibrate.min_found * blobs
    state = state.replace(prior=state.prior.replace(outline=jnp.zeros((), jnp.float32)))
    if self.cfg.calibrate.outline and not bootstrap:
      state = state.replace(decoder_params=sharp(state.decoder_params))
    return self._place(state.replace(
        wake_opt_state=self.wake_tx.init(wake_trainable(state)),
        bootstrap=jnp.asarray(bootstrap),
        wake_best=jnp.asarray(jnp.inf, jnp.float32), wake_since=jnp.int32(0),
        best_decoder_params=jax.tree.map(jnp.copy, state.decoder_params),
        best_noise_sigma=jnp.copy(state.prior.noise_sigma)))

  def _read(self, state, images):
    """Every pyramid level of ``images``: the encoder's posteriors, or (bootstrap) LoG
    blobs of the band at each level."""
    m = self.cfg.model
    if not bool(state.bootstrap):
      return self.real.read(self._encoder(state), images)
    blobs = lambda ims: [blob_posterior(pad_to_cells(im, m.cell), m.cell, m.radius_max, m.types)
                         for im in ims]
    return self.real.read(blobs, images)

  def _encoder(self, state):
    """The encoder of ``state`` as the reader calls it (``pyramid.Encoding``)."""
    return lambda images: self.encoding.posteriors(state.params, images)

  def _wake_views(self, state):
    """(fitted crops sampler, held-out crops judge, held-out reads) of this round."""
    c, m, thr = self.cfg.calibrate, self.cfg.model, self.cfg.trainer.threshold
    size = c.wake_crop // m.cell
    train = WakeViews(self.real.views(self._read(state, self.real.fitted), thr), size,
                      m.reach_cells, m.cell, c.wake_levels)
    read_held = self._read(state, self.real.held_out)
    held = WakeViews(self.real.views(read_held, thr), size, m.reach_cells, m.cell,
                     c.wake_levels)
    positions = held.positions(self.keys["heldout"], c.wake_eval_crops)
    held.fix(positions, self.wake_loss, jax.random.fold_in(self.keys["heldout"], 1),
             c.wake_batch)
    return train, held, read_held

  def refit_prior(self, state):
    """Empirical-Bayes refit of the prior to what the wake read on every pyramid level of
    the fitted real images (the encoder, or LoG blobs in a bootstrapped round): density and
    radius distribution of the band, the share of area under larger droplets (at least
    ``calibrate.larger_floor``, split evenly between the larger layers, so the simulated
    crops are as covered as the real ones), and the background's range and spread; radii
    times the searched outline scale (``Prior.outline``)."""
    prior, m, thr = state.prior, self.cfg.model, self.cfg.trainer.threshold
    if self.cfg.calibrate.refit_prior:
      read = self._read(state, self.real.fitted)  # What the wake read (LoG when bootstrapped).
      radii, area, covered = band_stats(read, m, thr, float(state.prior.outline))
      share = np.clip(covered, self.cfg.calibrate.larger_floor, 0.9) / max(m.larger_layers, 1)
      prior = fit_background(prior, [lv[0].posterior for lv in read]).replace(
          larger_fraction=jnp.float32(share) * jnp.ones_like(prior.larger_fraction))
      if len(radii) > 10:  # After the larger layers' share: they thin the band's droplets.
        prior = fit_prior(jax.random.fold_in(self.keys["refit"], int(state.round)),
                          stats_of(radii, area), m, prior)
    state = self._place(state.replace(prior=prior, stage=jnp.int32(SLEEP),
                                      updates=state.updates + 1))
    self._save(state)
    return state

  def end_round(self, state):
    """Records the round on the held-out real images (when calibrating): the posterior's
    widening (``Prior.widen``), where droplets' edges lie relative to the read radii
    (``Prior.edge``, ``training.edge``), after the last round the decoder's polish
    (``_polish``), and the reconstruction; offers the state to ``calibrated``
    (``_competes``), and moves on to the next round (or DONE)."""
    r = int(state.round)
    record = None
    self._spend_budget(r)
    if self.real is not None:
      thr = self.cfg.trainer.threshold
      read_held = self.real.read(self._encoder(state), self.real.held_out)
      points = [self.real.points(state.decoder_params, levels, thr) for levels in read_held]
      rng = np.random.default_rng(np.asarray(jax.random.key_data(
          jax.random.fold_in(self.keys["widen"], r))))
      # The bootstrap's residual is the one of the decoder the encoder was trained with.
      widen, found = self.real.widen(self._encoder(state), state.decoder_params, thr, rng,
                                     points)
      (a, b, r0), measured = edge_map(self.real.held_out, [table for table, _ in points])
      scale = self.cfg.data.scale  # The map goes to the original images' pixels.
      edge = IDENTITY_EDGE if is_identity((a, b, r0)) else (a, b / scale, r0 / scale)
      if self.cfg.model.appearance == "edge":
        # r is the edge: the measured map is a check of that, recorded but never applied.
        measured_edge, edge = edge, IDENTITY_EDGE
      else:
        measured_edge = edge
      state = state.replace(prior=state.prior.replace(
          widen=jnp.asarray(widen), edge=jnp.asarray(edge, jnp.float32)))
      if r == self.last_round and self.cfg.calibrate.polish_steps:
        state = self._polish(state, read_held)
        points = [self.real.points(state.decoder_params, levels, thr) for levels in read_held]
      record = self.real.record(points)
      record.update(round=r, step=int(state.step), widen_found=found, edge_found=measured,
                    edge_measured=[float(v) for v in measured_edge], **state.prior.summary())
      self.rounds_log.write(event="round", **record)
      self.last_record = record
      self.say(f"round {r}: held-out real RMSE {record['real_rmse']:.4f} (flat colour "
               f"{record['flat_rmse']:.4f}), {record['count_per_image']:.0f} droplets/image, "
               f"noise sigma {record['noise_sigma']:.4f}, density {record['density']:.4f}, "
               f"log r ~ N({record['radius_loc']:.2f}, {record['radius_scale']:.2f}), "
               f"posterior widened x/y/r by {widen[0]:.2f}/{widen[1]:.2f}/{widen[2]:.2f}, "
               f"edges measured at {measured_edge[0]:.3f} × r {measured_edge[1]:+.2f} px "
               f"({measured} droplets)")
    nxt = r + 1
    state = self._place(state.replace(
        round=jnp.int32(nxt), stage=jnp.int32(WAKE if nxt <= self.last_round else DONE),
        wake_step=jnp.int32(0), updates=state.updates + 1))
    self._save(state)
    if record is not None and self._competes(r, bool(state.bootstrap)):
      self.ckpt.save_calibrated(state, self.cfg, record)
    return state

  def _spend_budget(self, r: int) -> None:
    """With ``time_budget``, round ``r`` (>= 1: one calibration round is always made) is
    the last when another one like it would not fit (``training.budget``)."""
    fits, took, used = self.budget.round_ended()
    if r >= 1 and r < self.last_round and not fits:
      self.last_round = r
      self.say(f"round {r} took {took / 60:.1f} min, {used / 60:.1f} of the "
               f"{self.cfg.time_budget:g} min budget are used: it is the last round "
               f"(the same command goes on with round {r + 1})")

  def _polish(self, state, read_held):
    """``training.polish``: the decoder fitted to the point render of the fitted images,
    judged on the held-out ones (``read_held``); logged per judgement."""
    m, thr, r = self.cfg.model, self.cfg.trainer.threshold, int(state.round)
    key = jax.random.fold_in(self.keys["polish"], r)
    self.say(f"round {r}: polishing the decoder on the point catalogs of the fitted images")
    fitted = (self.real.fitted, self.real.read(self._encoder(state), self.real.fitted))
    params, rows = self._until_sigterm(
        state, lambda stop: polish.polish(
            m, state.decoder_params, fitted, (self.real.held_out, read_held), thr, key,
            steps=self.cfg.calibrate.polish_steps, lr=self.cfg.calibrate.wake_lr, stop=stop),
        polish.Stopped, f"the decoder's polish after round {r}; its sleep stage's end")
    for row in rows:
      self.rounds_log.write(event="polish", round=r, **row)
    best = min(row["held_out_rmse"] for row in rows)
    self.say(f"round {r}: polish took the held-out RMSE of the sampled pixels from "
             f"{rows[0]['held_out_rmse']:.4f} to {best:.4f} in {rows[-1]['step']} steps; "
             f"decoder edge {edge_width(params):.2f} px")
    return self._place(state.replace(decoder_params=params, updates=state.updates + 1))

  def _competes(self, r: int, bootstrap: bool) -> bool:
    """Whether round ``r`` competes for ``calibrated``. With ``calibrate.outline`` only the
    rounds whose outline was searched (and the last round) do: a sharp-edged decoder
    fits the pixels worse than a soft-edged one that paints rims outside r, so the
    held-out RMSE would pick a round that never searched."""
    return not self.cfg.calibrate.outline or r == self.last_round or (r >= 1 and not bootstrap)

  def close(self) -> None:
    self.ckpt.close()
