"""Multi-host training: two processes joined by ``jax.distributed`` (over localhost, two CPU
devices each) train exactly as one process does, and write one set of outputs."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from dropamort.checkpoint import load

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

WORKER = textwrap.dedent("""
    import sys
    import jax
    process, port, run_dir = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    if process >= 0:
      jax.distributed.initialize(coordinator_address=f"localhost:{port}", num_processes=2,
                                 process_id=process)
    from dropamort.config import EncoderConfig, ModelConfig, TrainConfig, TrainerConfig
    from dropamort.training.loop import train
    cfg = TrainConfig(model=ModelConfig(height=16, width=16, radius_max=4.0),
                      encoder=EncoderConfig(stem=4, width=8, depth=2),
                      trainer=TrainerConfig(steps=4, batch_size=8, val_every=2, val_images=8,
                                            checkpoint_every=2, log_every=1, progress=False))
    result = train(cfg, run_dir)
    print("devices", jax.device_count(), "processes", jax.process_count(), "f1",
          result["metrics"]["f1"])
""")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


@pytest.mark.slow  # Three processes (~1 min): run with `python -m pytest -m slow`.
def test_two_processes_train_like_one_and_write_one_set_of_outputs(tmp_path):
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
             JAX_PLATFORMS="cpu")
  port, multi = str(_free_port()), str(tmp_path / "multi")
  procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(k), port, multi], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for k in range(2)]
  outs = [p.communicate(timeout=600) for p in procs]
  for p, (out, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
    assert "devices 4 processes 2" in out
  single = str(tmp_path / "single")
  one = subprocess.run([sys.executable, "-c", WORKER, "-1", port, single], cwd=ROOT,
                       env=dict(env, XLA_FLAGS="--xla_force_host_platform_device_count=1"),
                       capture_output=True, text=True, timeout=600)
  assert one.returncode == 0, one.stderr[-3000:]
  assert outs[0][0].split("f1")[-1] == one.stdout.split("f1")[-1]  # Same validation F1.

  p_multi = load(os.path.join(multi, "checkpoints", "latest")).params
  p_single = load(os.path.join(single, "checkpoints", "latest")).params
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
               p_multi, p_single)
  with open(os.path.join(multi, "metrics.jsonl")) as f:
    multi_log = [json.loads(line)["step"] for line in f]
  with open(os.path.join(single, "metrics.jsonl")) as f:
    assert multi_log == [json.loads(line)["step"] for line in f]  # Written once, not twice.
  assert "data parallel over 4 devices" in outs[0][0]
  assert "data parallel" not in outs[1][0] and "validation F1" not in outs[1][1]
