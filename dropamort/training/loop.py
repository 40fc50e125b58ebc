"""The training loop: resume, step, log, validate, checkpoint, report (Python, outside jit)."""

from __future__ import annotations

import os
import signal
import threading
import time

import jax

from tqdm import tqdm

from dropamort.config import TrainConfig
from dropamort.model.catalog import to_table
from dropamort.training.checkpoint import Checkpoints
from dropamort.training.parallel import batch_mesh, replicate
from dropamort.training.report import MetricsLog, metrics_table, save_validation_picture
from dropamort.training.state import abstract_state, init_state, make_optimizer
from dropamort.training.step import make_posterior_fn, make_train_step
from dropamort.training.validate import validate, validation_set


class NonFiniteLoss(RuntimeError):
  """Training produced non-finite losses for too many steps in a row."""


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


def train(cfg: TrainConfig, run_dir: str, *, stop_at: int | None = None,
          decoder_params=None) -> dict:
  """Trains the encoder on simulations, resuming from ``run_dir`` if it holds a checkpoint.

  Args:
    cfg: the configuration.
    run_dir: where checkpoints, metrics.jsonl and pictures go.
    stop_at: stop after this step (as if interrupted); None trains to ``trainer.steps``.
    decoder_params: simulate with these decoder parameters instead of the checkpoint's
      or the configured ones (calibration hands its fitted decoder in this way).

  Returns:
    Final validation metrics, the checkpoint directory and the picture path.
  """
  t = cfg.trainer
  os.makedirs(run_dir, exist_ok=True)
  tx = make_optimizer(cfg.optim, t.steps)
  init_key, step_key = jax.random.split(jax.random.key(t.seed))
  ckpt = Checkpoints(os.path.join(run_dir, "checkpoints"), t.best_metric)
  ckpt.check_compatible(cfg)  # Before anything is built from the new config.
  state = ckpt.restore_latest(abstract_state(cfg, tx), cfg)
  resumed = state is not None
  if state is None:
    state = init_state(init_key, cfg, tx)
  if decoder_params is not None:
    state = state.replace(decoder_params=decoder_params)
  start = int(state.step)
  end = min(t.steps, stop_at if stop_at is not None else t.steps)
  primary = jax.process_index() == 0  # Multi-host: one process reports and draws.
  mesh = batch_mesh(t.batch_size) if t.data_parallel and jax.device_count() > 1 else None
  if mesh is not None:
    state = replicate(state, mesh)
    if primary:
      print(f"data parallel over {mesh.size} devices ({t.batch_size // mesh.size} images each)")
  train_step = make_train_step(cfg, tx, mesh)
  posterior_fn = make_posterior_fn(cfg)
  val_images, val_catalog = validation_set(cfg, state.decoder_params,
                                           os.path.join(run_dir, "val_data"))
  log = MetricsLog(os.path.join(run_dir, "metrics.jsonl"))
  if resumed and primary:
    print(f"resuming {run_dir} from step {start}")

  say = tqdm.write if primary else (lambda *_: None)
  bar = tqdm(total=end, initial=start, disable=not (t.progress and primary), unit="step",
             dynamic_ncols=True)
  in_a_row, last_metrics = 0, None
  t_mark, step_mark = time.perf_counter(), start  # Rate over the last logging window.
  with _StopOnSigterm() as sigterm:
    for step in range(start, end):
      state, m = train_step(state, step_key)
      loss, finite = float(m["loss"]), bool(m["finite"])
      in_a_row = 0 if finite else in_a_row + 1
      if not finite:
        say(f"step {step + 1}: non-finite loss ({loss}); update skipped")
        log.write(step=step + 1, event="nonfinite", loss=str(loss))
        if in_a_row >= t.max_nonfinite:
          ckpt.close()
          raise NonFiniteLoss(f"non-finite loss at step {step + 1} ({in_a_row} steps in a row); "
                              f"the last good checkpoint is in {ckpt.directory}")
      done = step + 1
      bar.update(1)
      if done % t.log_every == 0 or done == end:
        now = time.perf_counter()
        rate = (done - step_mark) / (now - t_mark)
        t_mark, step_mark = now, done
        bar.set_postfix(loss=f"{loss:.1f}", steps_per_s=f"{rate:.1f}")
        log.write(step=done, loss=loss, grad_norm=float(m["grad_norm"]), steps_per_s=rate)
      metrics = None
      if done % t.val_every == 0 or done == t.steps:
        metrics = validate(posterior_fn, state.params, val_images, val_catalog, cfg)
        log.write(step=done, event="validation", **metrics)
        say(f"step {done}: validation F1 {metrics['f1']:.3f}, NLL {metrics['nll']:.1f}")
        last_metrics = metrics
      if metrics is not None or done % t.checkpoint_every == 0 or done == end:
        ckpt.save(state, cfg, metrics=metrics)
      if sigterm.received:  # Preemption: keep the finished step, then stop cleanly.
        ckpt.save(state, cfg)
        ckpt.wait()
        ckpt.close()
        bar.close()
        log.write(step=done, event="sigterm")
        raise Preempted(f"SIGTERM: stopped after step {done}; checkpoint saved in "
                        f"{ckpt.directory}; run the same command again to resume")
  bar.close()
  ckpt.wait()

  if last_metrics is None:  # Resumed after the end, or stopped early: validate now.
    last_metrics = validate(posterior_fn, state.params, val_images, val_catalog, cfg)
  picture = os.path.join(run_dir, "validation.png")
  post = posterior_fn(state.params, val_images[:1])
  if primary:
    save_validation_picture(picture, val_images[0], to_table(
        jax.tree.map(lambda a: a[:1], val_catalog), cfg.model.cell)[0],
        post.to_table(cfg.model.cell, t.threshold)[0])
  ckpt.close()
  return {"metrics": last_metrics, "step": int(state.step), "checkpoints": ckpt.directory,
          "picture": picture, "params": state.params, "state": state,
          "table": metrics_table(last_metrics)}


def final_report(result: dict) -> str:
  """What ``train.py`` prints at the end."""
  best = result.get("calibrated") or os.path.join(result["checkpoints"], "best")
  return (f"validation metrics at step {result['step']}:\n{result['table']}\n"
          f"checkpoint: {best}\npicture:    {result['picture']}")



