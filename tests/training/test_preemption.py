"""SIGTERM (a scheduler's preemption notice): checkpoint, clean exit, exact resume."""

import os
import re
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from dropamort.config import register_configs, to_dataclass
from dropamort.inference.restore import restore
from dropamort.training.loop import train

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ARGS = ["debug=smoke", "trainer.steps=30", "trainer.val_every=30",
        "trainer.checkpoint_every=30", "trainer.progress=false"]
register_configs()


def _train_cmd(run_dir):
  return [sys.executable, os.path.join(ROOT, "train.py"), *ARGS, f"hydra.run.dir={run_dir}"]


def _steps_logged(run_dir) -> int:
  path = os.path.join(run_dir, "metrics.jsonl")
  if not os.path.exists(path):
    return 0
  with open(path) as f:
    return sum(1 for line in f if '"loss"' in line)


@pytest.mark.slow  # Two training processes (~1 min): run with `python -m pytest -m slow`.
def test_sigterm_saves_exits_and_the_restart_ends_where_an_uninterrupted_run_does(tmp_path):
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
  assert 3 <= stopped < 30
  latest = os.path.join(run_dir, "checkpoints", "latest")
  assert stopped in [int(d) for d in os.listdir(latest) if d.isdigit()]

  done = subprocess.run(_train_cmd(run_dir), cwd=tmp_path, capture_output=True, text=True,
                        timeout=300)
  assert done.returncode == 0, done.stderr
  assert f"resuming {run_dir} from step {stopped}" in done.stdout

  with initialize_config_dir(config_dir=os.path.join(ROOT, "conf"), version_base="1.3"):
    cfg = to_dataclass(compose(config_name="train", overrides=ARGS))
  reference = train(cfg, str(tmp_path / "reference"))["params"]
  _, resumed, _ = restore(latest)
  jax.tree.map(np.testing.assert_array_equal, resumed, jax.device_get(reference))
