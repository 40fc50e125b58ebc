"""The GPU check: every GPU figure the project claims, in one prepared run (≤ 8 min on one
H100/H200; ``--smoke``: the same code path on the CPU in under a minute).

    python bench/gpu.py --out gpu.json            # on the GPU machine
    python bench/gpu.py --smoke                   # anywhere (the test suite runs this)

Measures, in this order, and writes one JSON object to --out and as the last line:
training images/s for the default configuration and for ``experiment=gpu``; validation
F1 after ``--minutes`` of ``experiment=gpu`` training (from scratch); single-pass ms
(the encoder on every pyramid level infer.py reads) for a 380×507 and a 2028×1520 image,
the latter also with 16 and 64 tiles per encoder call (infer.py's default is 4);
batched inference images/s (380×507, ``--batch`` per call); peak device memory.
"""

import argparse
import json
import os
import sys
import tempfile
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import machine, median_ms  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
clock = time.perf_counter  # The clock the rates and the training budget are read from.
TILE_BATCHES = (16, 64)  # Tiles per encoder call tried on the tiled size (default 4).


def compose(*overrides):
  from hydra import compose as hydra_compose, initialize_config_dir

  from dropamort.config import register_configs, to_dataclass

  register_configs()
  with initialize_config_dir(config_dir=os.path.join(ROOT, "conf"), version_base="1.3"):
    return to_dataclass(hydra_compose(config_name="train", overrides=list(overrides)))


def train_rate(cfg, steps: int) -> float:
  """Images per second of the jitted training step (after compiling)."""
  from dropamort.encoder.cnn import make_encoder
  from dropamort.training.state import init_state, make_optimizer, make_wake_optimizer
  from dropamort.training.step import make_sleep_step

  tx = make_optimizer(cfg.optim, cfg.trainer.steps)
  state = init_state(jax.random.key(0), cfg, tx, make_wake_optimizer(cfg.calibrate.wake_lr))
  step = make_sleep_step(cfg.model, make_encoder(cfg.encoder, cfg.model), tx,
                         cfg.trainer.batch_size)
  key = jax.random.key(1)
  state, m = step(state, key)
  jax.block_until_ready(m["loss"])
  t0 = clock()
  for _ in range(steps):
    state, m = step(state, key)
  jax.block_until_ready(m["loss"])
  return cfg.trainer.batch_size * steps / (clock() - t0)


def timed_training(cfg, seconds: float, run_dir: str):
  """Trains ``cfg`` from scratch for ``seconds`` and validates: (steps, F1, trainer)."""
  from dropamort.training.trainer import Trainer

  trainer = Trainer(cfg, run_dir)
  state, _ = trainer.initial_state()
  t0 = clock()
  while clock() - t0 < seconds:
    state, _ = trainer.sleep_step(state, trainer.keys["sleep"])
  steps = int(state.step)
  f1 = trainer.validate(state)["f1"]
  trainer.close()
  return steps, f1, state


def inference_figures(cfg, state, sizes, batch: int, repeats: int) -> dict:
  from dropamort.inference.predictor import Predictor, TilePlan
  from dropamort.pyramid import read

  predictor = Predictor(cfg, state.params, state.decoder_params, prior=state.prior)
  rng = np.random.default_rng(0)
  out = {}
  for h, w in sizes:
    image = rng.random((h, w, 3)).astype(np.float32)
    out[f"single_pass_ms_{h}x{w}"] = round(median_ms(
        lambda im: [lr.posterior for lr in read(predictor.posteriors, [im], cfg.model)[0]], image,
        repeats=repeats, warmup=1), 2)
  h, w = sizes[-1]  # The tiled size again, with more tiles per encoder call.
  image = rng.random((h, w, 3)).astype(np.float32)
  for tiles in TILE_BATCHES:
    tiled = Predictor(cfg, state.params, state.decoder_params, TilePlan(batch=tiles),
                      prior=state.prior)
    out[f"single_pass_ms_{h}x{w}_tiles_{tiles}"] = round(median_ms(
        lambda im: [lr.posterior for lr in read(tiled.posteriors, [im], cfg.model)[0]], image,
        repeats=repeats, warmup=1), 2)
  h, w = sizes[0]
  images = [rng.random((h, w, 3)).astype(np.float32) for _ in range(batch)]
  ms = median_ms(lambda ims: predictor.posteriors(ims, batch=batch), images,
                 repeats=max(2, repeats // 2), warmup=1)
  out[f"batched_images_per_s_{h}x{w}"] = round(batch / ms * 1e3, 1)
  return out


def peak_memory():
  stats = jax.devices()[0].memory_stats() or {}
  peak = stats.get("peak_bytes_in_use")
  return None if peak is None else round(peak / 2**30, 3)


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--smoke", action="store_true", help="tiny sizes: the code path on a CPU")
  ap.add_argument("--minutes", type=float, default=2.0, help="experiment=gpu training time")
  ap.add_argument("--batch", type=int, default=32, help="images per batched call")
  ap.add_argument("--out", default="gpu.json")
  args = ap.parse_args(argv)
  t_start = time.perf_counter()
  smoke = ["debug=smoke"] if args.smoke else []
  out = {"smoke": args.smoke, "device": str(jax.devices()[0].device_kind), "machine": machine()}

  def save(**figures):
    """Adds ``figures`` and rewrites --out (atomically), so a run stopped at its time limit
    still leaves every figure measured so far; a progress line goes to stderr."""
    out.update(figures, seconds=round(time.perf_counter() - t_start, 1))
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
      json.dump(out, f, indent=1)
    os.replace(tmp, args.out)
    print(f"[gpu.py {out['seconds']:.0f} s] {json.dumps(figures)}", file=sys.stderr, flush=True)

  default, gpu = compose(*smoke), compose("experiment=gpu", *smoke)
  steps = 3 if args.smoke else 50
  save(train_images_per_s_default=round(train_rate(default, steps), 1))
  save(train_images_per_s_gpu=round(train_rate(gpu, steps), 1))
  seconds = 5.0 if args.smoke else 60 * args.minutes
  with tempfile.TemporaryDirectory() as run_dir:
    n, f1, state = timed_training(gpu, seconds, run_dir)
  save(gpu_training_seconds=seconds, gpu_training_steps=n, gpu_validation_f1=round(float(f1), 4))
  sizes = [(48, 64), (96, 128)] if args.smoke else [(380, 507), (1520, 2028)]
  save(**inference_figures(gpu, state, sizes, 4 if args.smoke else args.batch,
                           3 if args.smoke else 10))
  save(peak_device_memory_gib=peak_memory())
  print(json.dumps(out))
  return out

if __name__ == "__main__":
  main()
