"""Data-parallel training on 8 forced host devices equals single-device training."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SCRIPT = textwrap.dedent("""
    import json
    import jax, numpy as np
    from dropamort.config import EncoderConfig, ModelConfig, TrainConfig, TrainerConfig
    from dropamort.parallel import batch_mesh, replicate
    from tests.training.helpers import sleep_setup

    cfg = TrainConfig(model=ModelConfig(height=16, width=16, radius_max=4.0),
                      encoder=EncoderConfig(stem=4, width=8, depth=2),
                      trainer=TrainerConfig(steps=3, batch_size=8, progress=False))
    key = jax.random.key(0)
    runs = {}
    for name, mesh in (("one", None), ("eight", batch_mesh(8))):
      state, step = sleep_setup(cfg, key, 3, mesh)
      if mesh is not None:
        state = replicate(state, mesh)
      losses = []
      for _ in range(3):
        state, m = step(state, jax.random.key(1))
        losses.append(float(m["loss"]))
      runs[name] = (losses, [np.asarray(x) for x in jax.tree.leaves(state.params)])
    (l1, p1), (l8, p8) = runs["one"], runs["eight"]
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(p1, p8))
    print(json.dumps({"devices": jax.device_count(), "loss_one": l1, "loss_eight": l8,
                      "max_param_diff": diff, "mesh_size": batch_mesh(8).size}))
""")


def test_eight_devices_match_one():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
             JAX_PLATFORMS="cpu")
  p = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True,
                     text=True, timeout=600)
  assert p.returncode == 0, p.stderr[-3000:]
  out = json.loads(p.stdout.strip().splitlines()[-1])
  assert out["devices"] == 8 and out["mesh_size"] == 8
  for a, b in zip(out["loss_one"], out["loss_eight"]):
    assert abs(a - b) <= 1e-4 * max(1.0, abs(a)), (out["loss_one"], out["loss_eight"])
  assert out["max_param_diff"] < 1e-4


TRAIN_ON_8 = textwrap.dedent("""
    import sys
    from dropamort.config import EncoderConfig, ModelConfig, TrainConfig, TrainerConfig
    from dropamort.training.loop import train
    cfg = TrainConfig(model=ModelConfig(height=16, width=16, radius_max=4.0),
                      encoder=EncoderConfig(stem=4, width=8, depth=2),
                      trainer=TrainerConfig(steps=4, batch_size=8, val_every=2, val_images=8,
                                            checkpoint_every=2, progress=False))
    train(cfg, sys.argv[1], stop_at=2)
""")


@pytest.mark.slow  # An 8-device process and two runs (~1 min): `python -m pytest -m slow`.
def test_a_checkpoint_saved_on_eight_devices_resumes_on_one(tmp_path):
  import jax
  import numpy as np

  from dropamort.config import EncoderConfig, ModelConfig, TrainConfig, TrainerConfig
  from dropamort.training.loop import train

  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
             JAX_PLATFORMS="cpu")
  p = subprocess.run([sys.executable, "-c", TRAIN_ON_8, str(tmp_path / "run")], cwd=ROOT,
                     env=env, capture_output=True, text=True, timeout=600)
  assert p.returncode == 0, p.stderr[-3000:]
  assert "data parallel over 8 devices (1 images each)" in p.stdout
  cfg = TrainConfig(model=ModelConfig(height=16, width=16, radius_max=4.0),
                    encoder=EncoderConfig(stem=4, width=8, depth=2),
                    trainer=TrainerConfig(steps=4, batch_size=8, val_every=2, val_images=8,
                                          checkpoint_every=2, progress=False))
  resumed = train(cfg, str(tmp_path / "run"))  # This process has one device.
  assert resumed["step"] == 4
  reference = train(cfg, str(tmp_path / "reference"))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
               jax.device_get(resumed["params"]), jax.device_get(reference["params"]))
