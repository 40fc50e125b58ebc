"""The run: stages in order until DONE, from wherever the run directory's checkpoint stands.

Training on simulations is the case with no real images (zero calibration rounds).
"""

from __future__ import annotations

import os

import jax

from dropamort.model.catalog import to_table
from dropamort.training.report import ROUND_KEYS, metrics_table, save_validation_picture
from dropamort.training.state import DONE, REFIT, SLEEP, WAKE
from dropamort.training.trainer import Trainer, sleep_target


def train(cfg, run_dir: str, *, stop_at: int | None = None) -> dict:
  """Trains (and, with ``data.real``, calibrates), resuming from ``run_dir``.

  Args:
    cfg: the ``TrainConfig``.
    run_dir: checkpoints, metrics.jsonl, calibration.jsonl and pictures go here.
    stop_at: stop once this many encoder steps are done (and the round they end, if any,
      is recorded), as if interrupted there; None runs to the end.

  Returns:
    The last validation metrics, the last held-out real-image record (calibration), the
    step, the checkpoint inference should use, the picture path and the final state.
  """
  trainer = Trainer(cfg, run_dir)
  try:
    state, resumed = trainer.initial_state()
    if resumed:
      r = int(state.round)
      trainer.say(f"resuming {run_dir} from step {int(state.step)}"
                  + (f" (calibration round {r})" if r else ""))
    while int(state.stage) != DONE:
      stage, r = int(state.stage), int(state.round)
      if stop_at is not None and int(state.step) >= stop_at and stage in (WAKE, REFIT):
        break
      if stage == WAKE:
        state = trainer.wake(state)
      elif stage == REFIT:
        state = trainer.refit_prior(state)
      elif stage == SLEEP:
        target = sleep_target(cfg, r)
        until = target if stop_at is None else min(target, max(stop_at, int(state.step)))
        state = trainer.sleep(state, until)
        if int(state.step) < target:
          break
        state = trainer.end_round(state)
    return _finish(trainer, state)
  finally:
    trainer.close()


def _finish(trainer: Trainer, state) -> dict:
  cfg = trainer.cfg
  metrics = trainer.last_metrics or trainer.validate(state)
  picture = os.path.join(trainer.run_dir, "validation.png")
  post = trainer.posterior_fn(state.params, trainer.val_images[:1])
  if trainer.primary:
    save_validation_picture(picture, trainer.val_images[0], to_table(
        jax.tree.map(lambda a: a[:1], trainer.val_catalog), cfg.model.cell)[0],
        post.to_table(cfg.model.cell, cfg.trainer.threshold)[0])
  trainer.ckpt.wait()
  calibrated = trainer.ckpt.calibrated.latest_step() is not None
  use = os.path.join(trainer.ckpt.directory, "calibrated" if calibrated else "best")
  return {"metrics": metrics, "real": trainer.last_record, "step": int(state.step),
          "round": int(state.round), "checkpoints": trainer.ckpt.directory,
          "checkpoint": use, "picture": picture, "params": state.params, "state": state,
          "table": metrics_table(metrics)}


def final_report(result: dict) -> str:
  """What ``train.py`` prints at the end."""
  lines = [f"validation metrics (simulated set) at step {result['step']}:", result["table"]]
  if result.get("real"):
    lines += [f"held-out real images after round {result['real']['round']}:",
              metrics_table(result["real"], ROUND_KEYS)]
  lines += [f"checkpoint: {result['checkpoint']}", f"picture:    {result['picture']}"]
  return "\n".join(lines)
