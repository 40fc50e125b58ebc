"""Preemption: SIGTERM (a scheduler's notice) checkpoints and exits cleanly; SIGKILL, even in
the middle of a checkpoint save, loses at most the steps since the last complete one. Either
way the restart ends with exactly the parameters of an uninterrupted run."""

import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from dropamort.config import register_configs, to_dataclass
from dropamort.checkpoint import load
from dropamort.training.loop import train

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Enough steps that the SIGTERM below lands mid-run even when every program comes from
# the compilation cache (a smoke step then takes a few ms).
ARGS = ["debug=smoke", "steps=300", "trainer.val_every=300",
        "trainer.checkpoint_every=300", "trainer.progress=false"]
register_configs()


def _train_cmd(run_dir, *extra):
  return [sys.executable, os.path.join(ROOT, "train.py"), *ARGS, *extra,
          f"hydra.run.dir={run_dir}"]


def _steps_logged(run_dir) -> int:
  path = os.path.join(run_dir, "metrics.jsonl")
  if not os.path.exists(path):
    return 0
  with open(path) as f:
    return sum(1 for line in f if '"loss"' in line)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  """Final parameters of the same training run, never interrupted."""
  with initialize_config_dir(config_dir=os.path.join(ROOT, "conf"), version_base="1.3"):
    cfg = to_dataclass(compose(config_name="train", overrides=ARGS))
  return jax.device_get(train(cfg, str(tmp_path_factory.mktemp("reference")))["params"])


def _assert_final_params_equal(latest, reference):
  resumed = load(latest).params
  jax.tree.map(np.testing.assert_array_equal, resumed, reference)


@pytest.mark.slow  # Two training processes (~1 min): run with `python -m pytest -m slow`.
def test_sigterm_saves_exits_and_the_restart_ends_where_an_uninterrupted_run_does(
    tmp_path, uninterrupted):
  run_dir = str(tmp_path / "run")
  proc = subprocess.Popen(_train_cmd(run_dir), cwd=tmp_path, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  deadline = time.time() + 240
  while _steps_logged(run_dir) < 3 and proc.poll() is None and time.time() < deadline:
    time.sleep(0.2)
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate(timeout=240)
  assert proc.returncode == 143, err
  stopped = int(re.search(r"SIGTERM: stopped after step (\d+)", err).group(1))
  assert 3 <= stopped < 300
  latest = os.path.join(run_dir, "checkpoints", "latest")
  assert stopped in [int(d) for d in os.listdir(latest) if d.isdigit()]

  done = subprocess.run(_train_cmd(run_dir), cwd=tmp_path, capture_output=True, text=True,
                        timeout=300)
  assert done.returncode == 0, done.stderr
  assert f"resuming {run_dir} from step {stopped}" in done.stdout

  _assert_final_params_equal(latest, uninterrupted)


# Runs train.py with Orbax's commit step (write commit_success.txt, rename the temporary
# folder into place) held open for the checkpoint of one step, after all its arrays are
# written: the worst moment for a SIGKILL, a checkpoint that looks whole but is not.
HOLD_SAVE = textwrap.dedent("""
    import asyncio, runpy, sys
    from orbax.checkpoint._src.path import atomicity

    marker, step, train_py = sys.argv[1], sys.argv[2], sys.argv[3]
    finalize = atomicity.AtomicRenameTemporaryPath.finalize

    async def held(self):
      final = self.get_final()
      if final.name == step and final.parent.name == "latest":
        with open(marker, "w") as f:
          f.write(str(self.get()))
        await asyncio.sleep(3600)
      await finalize(self)

    atomicity.AtomicRenameTemporaryPath.finalize = held
    sys.argv = [train_py, *sys.argv[4:]]
    runpy.run_path(train_py, run_name="__main__")
""")


@pytest.mark.slow  # Two training processes (~1 min): run with `python -m pytest -m slow`.
def test_sigkill_during_a_save_resumes_from_the_last_complete_checkpoint(
    tmp_path, uninterrupted):
  run_dir, marker = str(tmp_path / "run"), str(tmp_path / "saving")
  every = "trainer.checkpoint_every=5"
  cmd = _train_cmd(run_dir, every)
  proc = subprocess.Popen([sys.executable, "-c", HOLD_SAVE, marker, "15", cmd[1], *cmd[2:]],
                          cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)
  deadline = time.time() + 240
  while not os.path.exists(marker) and proc.poll() is None and time.time() < deadline:
    time.sleep(0.1)
  assert os.path.exists(marker), "the save of step 15 was never reached"
  proc.kill()
  proc.communicate(timeout=60)
  latest = os.path.join(run_dir, "checkpoints", "latest")
  with open(marker) as f:
    half_written = f.read()
  assert os.path.isdir(half_written)  # Step 15's arrays are on disk, not committed.
  assert "15" not in os.listdir(latest)

  done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr
  assert f"resuming {run_dir} from step 10" in done.stdout
  assert not os.path.exists(half_written)  # Cleaned up, never taken as a checkpoint.
  _assert_final_params_equal(latest, uninterrupted)
