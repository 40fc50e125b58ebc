"""Training throughput at the default config, and the share of step time spent simulating.

    python bench/train.py [--repeats 30]

step_ms: one full jitted train step (simulate -> loss -> grad -> update);
sim_ms: the simulator alone on the same batch size, jitted; sim_fraction = sim_ms / step_ms;
sim_images_per_s: the simulator's throughput (batch / sim_ms);
wake_step_ms: one jitted wake step of calibration (``training.wake.make_wake_step``: the
expected log-likelihood of ``calibrate.wake_batch`` crops of ``calibrate.wake_crop`` px
under one catalog drawn from the posterior, its gradient, the Adam update), on crops of
noise read by an untrained encoder (the time does not depend on what the crops show).
"""

import argparse
import functools
import sys

import jax

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from common import median_ms, report  # noqa: E402

from dropamort.config import TrainConfig  # noqa: E402
from dropamort.encoder.cnn import make_encoder  # noqa: E402
from dropamort.model.prior import Prior  # noqa: E402
from dropamort.model.simulate import simulate  # noqa: E402
from dropamort.training.state import init_state, make_optimizer, make_wake_optimizer  # noqa: E402
from dropamort.training.step import make_sleep_step  # noqa: E402
from dropamort.training.wake import canvas_model, make_wake_step  # noqa: E402


def wake_step_ms(cfg, state, key, repeats: int) -> float:
  """Median ms of one calibration wake step at ``cfg``'s crop size and batch."""
  m, c = cfg.model, cfg.calibrate
  size, halo = c.wake_crop // m.cell, m.reach_cells
  canvas = canvas_model(m, size, halo)
  encoder = make_encoder(cfg.encoder, canvas)
  x = jax.random.uniform(key, (c.wake_batch, canvas.height, canvas.width, m.channels))
  post = jax.jit(lambda p, x: encoder.apply({"params": p}, x))(state.params, x)
  a = halo * m.cell
  crops = x[:, a:a + size * m.cell, a:a + size * m.cell]
  weights = jax.numpy.ones(crops.shape[:3])
  step = make_wake_step(m, make_wake_optimizer(c.wake_lr), size=size, samples=c.wake_samples)
  holder = [state]

  def one():
    holder[0], metrics = step(holder[0], key, post, crops, weights)
    return metrics["loss"]

  return median_ms(one, repeats=repeats, warmup=2)


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--repeats", type=int, default=30)
  args = ap.parse_args()
  cfg = TrainConfig()
  tx = make_optimizer(cfg.optim, cfg.trainer.steps)
  key = jax.random.key(0)
  holder = [init_state(key, cfg, tx, make_wake_optimizer(cfg.calibrate.wake_lr))]
  step = make_sleep_step(cfg.model, make_encoder(cfg.encoder, cfg.model), tx,
                         cfg.trainer.batch_size)

  def one_step():
    holder[0], m = step(holder[0], key)
    return m["loss"]

  sim = jax.jit(functools.partial(simulate, prior=Prior.from_config(cfg.model), cfg=cfg.model,
                                  n=cfg.trainer.batch_size))
  keys = iter(jax.random.split(key, args.repeats + 10))
  params = jax.tree.map(lambda a: a.copy(), holder[0].decoder_params)  # The step donates.
  step_ms = median_ms(one_step, repeats=args.repeats, warmup=3)
  sim_ms = median_ms(lambda: sim(next(keys), params), repeats=args.repeats, warmup=2)
  wake_ms = wake_step_ms(cfg, init_state(key, cfg, tx, make_wake_optimizer(cfg.calibrate.wake_lr)),
                        key, max(5, args.repeats // 3))
  b = cfg.trainer.batch_size
  report(wake_step_ms=round(wake_ms, 1), batch=b, image=[cfg.model.height, cfg.model.width],
         step_ms=round(step_ms, 2), sim_ms=round(sim_ms, 2),
         sim_fraction=round(sim_ms / step_ms, 3), images_per_s=round(b / step_ms * 1e3, 1),
         sim_images_per_s=round(b / sim_ms * 1e3, 1))


if __name__ == "__main__":
  main()
