import dataclasses
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dropamort.inference.restore import restore
from dropamort.training.checkpoint import Checkpoints, IncompatibleCheckpoint
from dropamort.training.loop import NonFiniteLoss, train
from dropamort.training.state import abstract_state, init_state, make_optimizer
from dropamort.training.step import make_train_step


def test_restore_is_bit_identical(key, tiny_cfg, tmp_path):
  tx = make_optimizer(tiny_cfg.optim, 10)
  state = init_state(key, tiny_cfg, tx)
  state, _ = make_train_step(tiny_cfg, tx)(state, key)  # Non-trivial optimizer state.
  ckpt = Checkpoints(str(tmp_path / "ck"), "f1")
  ckpt.save(state, tiny_cfg, metrics={"f1": 0.5})
  ckpt.wait()
  back = Checkpoints(str(tmp_path / "ck"), "f1").restore_latest(
      abstract_state(tiny_cfg, tx), tiny_cfg)
  assert jax.tree.structure(back) == jax.tree.structure(state)
  jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, state),
               jax.tree.map(np.asarray, back))
  assert ckpt.best.best_step() == 1


def test_an_uncommitted_save_is_never_restored_and_is_cleaned_up(key, tiny_cfg, tmp_path):
  """What a SIGKILL during a save leaves: the next step's folder, arrays written, no commit."""
  tx = make_optimizer(tiny_cfg.optim, 10)
  state = init_state(key, tiny_cfg, tx)
  ckpt = Checkpoints(str(tmp_path / "ck"), "f1")
  ckpt.save(state, tiny_cfg)
  ckpt.close()
  latest = tmp_path / "ck" / "latest"
  leftover = latest / "1.orbax-checkpoint-tmp"
  shutil.copytree(latest / "0", leftover)  # Whole-looking, but never renamed into place.
  reopened = Checkpoints(str(tmp_path / "ck"), "f1")
  assert reopened.latest.latest_step() == 0
  assert reopened.restore_latest(abstract_state(tiny_cfg, tx), tiny_cfg).step == 0
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


def test_nonfinite_losses_stop_the_run_and_the_last_good_checkpoint_loads(tiny_cfg, tmp_path):
  cfg = dataclasses.replace(tiny_cfg, trainer=dataclasses.replace(
      tiny_cfg.trainer, checkpoint_every=2, val_every=100, max_nonfinite=3))
  good = train(cfg, str(tmp_path), stop_at=2)
  poisoned = jax.tree.map(lambda a: jnp.full_like(a, jnp.nan), good["state"].decoder_params)
  with pytest.raises(NonFiniteLoss, match=r"at step 5 \(3 steps in a row\)"):
    train(cfg, str(tmp_path), decoder_params=poisoned)
  # Skipped updates leave the parameters as they were: whatever was saved since is
  # loadable and holds the last good parameters.
  _, params, _ = restore(str(tmp_path / "checkpoints" / "latest"))
  jax.tree.map(np.testing.assert_array_equal, params, jax.device_get(good["params"]))
