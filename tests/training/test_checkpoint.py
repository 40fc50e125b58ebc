import dataclasses
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from dropamort import checkpoint
from dropamort.checkpoint import CheckpointError, IncompatibleCheckpoint, RunCheckpoints
from dropamort.training.loop import train
from dropamort.training.state import abstract_init, make_optimizer, make_wake_optimizer
from dropamort.training.trainer import NonFiniteLoss
from tests.training.helpers import sleep_setup


def _fresh(cfg):
  return abstract_init(cfg, make_optimizer(cfg.optim, 10),
                       make_wake_optimizer(cfg.calibrate.wake_lr))


def _save_as_step_1(tmp_path, state: dict, cfg) -> None:
  """Writes ``state`` (an older layout) as the run's latest checkpoint, step 1."""
  mngr = ocp.CheckpointManager(str(tmp_path / "checkpoints" / "latest"),
                               item_names=("state", "config"))
  mngr.save(1, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                       config=ocp.args.JsonSave(dataclasses.asdict(cfg))))
  mngr.wait_until_finished()
  mngr.close()


def test_restore_is_bit_identical(key, tiny_cfg, tmp_path):
  state, step = sleep_setup(tiny_cfg, key, 10)
  state, _ = step(state, key)  # Non-trivial optimizer state.
  ckpt = RunCheckpoints(str(tmp_path), "f1")
  ckpt.save(state, tiny_cfg)
  ckpt.save_best(state, tiny_cfg, {"f1": 0.5})
  ckpt.close()
  back = RunCheckpoints(str(tmp_path), "f1").restore_latest(_fresh(tiny_cfg), tiny_cfg)
  assert jax.tree.structure(back) == jax.tree.structure(state)
  jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, state),
               jax.tree.map(np.asarray, back))
  saved = checkpoint.load(str(tmp_path))  # What inference reads: the 'best' step.
  assert saved.path.endswith("checkpoints/best/1")
  jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, state.params),
               saved.params)
  np.testing.assert_array_equal(saved.prior.noise_sigma, state.prior.noise_sigma)


def test_an_older_checkpoint_without_prior_or_rounds_is_refused_with_what_to_do(
    key, tiny_cfg, tmp_path):
  """The format before the prior travelled in the state: {step, params, opt_state,
  decoder_params, nonfinite}. Neither training nor inference fills in the rest."""
  state, step = sleep_setup(tiny_cfg, key, 10)
  state, _ = step(state, key)
  old = {k: getattr(state, k) for k in ("step", "params", "opt_state", "decoder_params",
                                        "nonfinite")}
  _save_as_step_1(tmp_path, old, tiny_cfg)
  with pytest.raises(CheckpointError, match=r"older dropamort \(its state has no .*prior.*"
                                            r"round.*new run directory"):
    RunCheckpoints(str(tmp_path), "f1").restore_latest(_fresh(tiny_cfg), tiny_cfg)
  with pytest.raises(CheckpointError, match="older dropamort.*the fitted prior.*"
                                            "checkpoint=example"):
    checkpoint.load(str(tmp_path / "checkpoints" / "latest"))


def test_a_checkpoint_whose_prior_lacks_a_field_is_refused_naming_it(key, tiny_cfg, tmp_path):
  """A prior without ``outline`` (before the outline search): the refusal names the
  field, for resuming and for reading alike; with the field the same state restores."""
  state, step = sleep_setup(tiny_cfg, key, 10)
  state, _ = step(state, key)
  old = {f.name: getattr(state, f.name) for f in dataclasses.fields(state)}
  old["prior"] = {k: v for k, v in vars(state.prior).items() if k != "outline"}
  _save_as_step_1(tmp_path, old, tiny_cfg)
  with pytest.raises(CheckpointError, match=r"no prior\.outline\)"):
    RunCheckpoints(str(tmp_path), "f1").restore_latest(_fresh(tiny_cfg), tiny_cfg)
  with pytest.raises(CheckpointError, match=r"no prior\.outline\)"):
    checkpoint.load(str(tmp_path / "checkpoints" / "latest"))


def test_a_wake_optimizer_of_another_layout_is_refused(key, tiny_cfg, tmp_path):
  """Before the outline was added the wake optimizer covered (decoder, log sigma) only."""
  state, step = sleep_setup(tiny_cfg, key, 10)
  tx = make_wake_optimizer(tiny_cfg.calibrate.wake_lr)
  old = {f.name: getattr(state, f.name) for f in dataclasses.fields(state)}
  old["wake_opt_state"] = tx.init((state.decoder_params,))
  _save_as_step_1(tmp_path, old, tiny_cfg)
  with pytest.raises(CheckpointError, match="older dropamort.*wake optimizer"):
    RunCheckpoints(str(tmp_path), "f1").restore_latest(_fresh(tiny_cfg), tiny_cfg)


def test_an_uncommitted_save_is_never_restored_and_is_cleaned_up(key, tiny_cfg, tmp_path):
  """What a SIGKILL during a save leaves: the next step's folder, arrays written, no commit."""
  state, _ = sleep_setup(tiny_cfg, key, 10)
  ckpt = RunCheckpoints(str(tmp_path), "f1")
  ckpt.save(state, tiny_cfg)
  ckpt.close()
  latest = tmp_path / "checkpoints" / "latest"
  leftover = latest / "1.orbax-checkpoint-tmp"
  shutil.copytree(latest / "0", leftover)  # Whole-looking, but never renamed into place.
  reopened = RunCheckpoints(str(tmp_path), "f1")
  assert reopened.latest.latest_step() == 0
  assert int(reopened.restore_latest(_fresh(tiny_cfg), tiny_cfg).step) == 0
  reopened.close()
  assert not leftover.exists()


def test_resume_reaches_the_same_parameters(tiny_cfg, tmp_path):
  whole = train(tiny_cfg, str(tmp_path / "whole"))
  part = train(tiny_cfg, str(tmp_path / "split"), stop_at=3)
  assert part["step"] == 3
  resumed = train(tiny_cfg, str(tmp_path / "split"))
  assert resumed["step"] == whole["step"] == 6
  jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, whole["params"]),
               jax.tree.map(np.asarray, resumed["params"]))
  for name in ("metrics.jsonl", "validation.png"):
    assert (tmp_path / "split" / name).exists()


def test_incompatible_config_is_refused(tiny_cfg, tmp_path):
  train(tiny_cfg, str(tmp_path / "run"), stop_at=3)
  other = dataclasses.replace(
      tiny_cfg, model=dataclasses.replace(tiny_cfg.model, types=4),
      encoder=dataclasses.replace(tiny_cfg.encoder, width=12))
  with pytest.raises(IncompatibleCheckpoint, match=r"model\.types: checkpoint 3, config 4"):
    train(other, str(tmp_path / "run"))
  # Nothing was overwritten: the original still resumes.
  assert train(tiny_cfg, str(tmp_path / "run"))["step"] == 6


def test_an_older_calibration_folder_is_refused_with_what_to_do(tiny_cfg, tmp_path):
  (tmp_path / "calibration" / "1").mkdir(parents=True)
  with pytest.raises(CheckpointError, match="older dropamort.*start a new run directory"):
    train(tiny_cfg, str(tmp_path))


def test_nonfinite_losses_stop_the_run_and_the_last_good_checkpoint_loads(tiny_cfg, tmp_path):
  cfg = dataclasses.replace(tiny_cfg, trainer=dataclasses.replace(
      tiny_cfg.trainer, checkpoint_every=2, val_every=100, max_nonfinite=3))
  good = train(cfg, str(tmp_path), stop_at=2)
  # Poison the saved decoder: every simulation, hence every loss, becomes NaN.
  ckpt = RunCheckpoints(str(tmp_path), "f1")
  state = ckpt.restore_latest(_fresh(cfg), cfg)
  poisoned = state.replace(decoder_params=jax.tree.map(
      lambda a: jnp.full_like(a, jnp.nan), state.decoder_params), updates=state.updates + 1)
  ckpt.save(poisoned, cfg)
  ckpt.close()
  with pytest.raises(NonFiniteLoss, match=r"at step 5 \(3 steps in a row\)"):
    train(cfg, str(tmp_path))
  # Skipped updates leave the parameters as they were: whatever was saved since is
  # loadable and holds the last good parameters.
  params = checkpoint.load(str(tmp_path / "checkpoints" / "latest")).params
  jax.tree.map(np.testing.assert_array_equal, params, jax.device_get(good["params"]))


def test_an_exported_model_reads_like_the_run_and_is_small(tiny_cfg, tmp_path):
  train(tiny_cfg, str(tmp_path / "run"))
  step_dir = checkpoint.export(str(tmp_path / "run"), str(tmp_path / "model"))
  a, b = checkpoint.load(str(tmp_path / "run")), checkpoint.load(str(tmp_path / "model"))
  assert b.cfg == a.cfg and step_dir.endswith(os.path.basename(a.path))
  for x, y in ((a.params, b.params), (a.decoder_params, b.decoder_params), (a.prior, b.prior)):
    jax.tree.map(np.testing.assert_array_equal, x, y)
  size = lambda d: sum(f.stat().st_size for f in d.rglob("*") if f.is_file())
  assert size(tmp_path / "model") < 0.6 * size(tmp_path / "run" / "checkpoints" / "best")
  with pytest.raises(CheckpointError, match="exists"):
    checkpoint.export(str(tmp_path / "run"), str(tmp_path / "model"))
