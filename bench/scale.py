"""Data-parallel training: 8 devices give the single-device loss, and their step rates.

    XLA_FLAGS=--xla_force_host_platform_device_count=8 python bench/scale.py [--steps 10]

(The script sets that flag itself when XLA_FLAGS is unset.) Default model and encoder,
global batch 32: the first steps' losses with a mesh of 8 devices and with one device,
their largest relative difference, and steps/s for each. On a CPU the 8 "devices" share
the same cores, so the rates say nothing about speed-up; on a multi-GPU machine they do.
"""

import argparse
import os
import sys
import time

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import jax  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import report  # noqa: E402

from dropamort.config import TrainConfig  # noqa: E402
from dropamort.encoder.cnn import make_encoder  # noqa: E402
from dropamort.parallel import batch_mesh, replicate  # noqa: E402
from dropamort.training.state import init_state, make_optimizer, make_wake_optimizer  # noqa: E402
from dropamort.training.step import make_sleep_step  # noqa: E402


def run(cfg, tx, mesh, steps):
  state = init_state(jax.random.key(0), cfg, tx, make_wake_optimizer(cfg.calibrate.wake_lr))
  if mesh is not None:
    state = replicate(state, mesh)
  step = make_sleep_step(cfg.model, make_encoder(cfg.encoder, cfg.model), tx,
                         cfg.trainer.batch_size, mesh)
  key = jax.random.key(1)
  state, m = step(state, key)  # Compiles.
  losses = [float(m["loss"])]
  t0 = time.perf_counter()
  for _ in range(steps - 1):
    state, m = step(state, key)
    losses.append(float(m["loss"]))
  return losses, (steps - 1) / (time.perf_counter() - t0)


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--steps", type=int, default=10)
  args = ap.parse_args()
  cfg = TrainConfig()
  tx = make_optimizer(cfg.optim, cfg.trainer.steps)
  n = jax.device_count()
  one, rate_one = run(cfg, tx, None, args.steps)
  many, rate_many = run(cfg, tx, batch_mesh(cfg.trainer.batch_size), args.steps)
  rel = max(abs(a - b) / max(1.0, abs(a)) for a, b in zip(one, many))
  report(devices=n, batch=cfg.trainer.batch_size, steps=args.steps,
         loss_one_device=[round(v, 4) for v in one[:3]],
         loss_all_devices=[round(v, 4) for v in many[:3]],
         max_rel_loss_diff=rel, steps_per_s_one_device=round(rate_one, 2),
         steps_per_s_all_devices=round(rate_many, 2),
         platform=jax.devices()[0].platform)


if __name__ == "__main__":
  main()
