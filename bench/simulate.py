"""Simulation throughput: batches of 32 images of 64×64 from the default prior.

    python bench/simulate.py [--batch 32] [--repeats 20]

"""

import argparse
import sys

import jax

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from common import median_ms, report  # noqa: E402

from dropamort.config import ModelConfig  # noqa: E402
from dropamort.model.model import configured_decoder_params  # noqa: E402
from dropamort.model.simulate import make_simulate  # noqa: E402


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--batch", type=int, default=32)
  ap.add_argument("--size", type=int, default=64)
  ap.add_argument("--repeats", type=int, default=20)
  args = ap.parse_args()
  cfg = ModelConfig(height=args.size, width=args.size)
  params = configured_decoder_params(cfg)
  sim = make_simulate(cfg, args.batch)
  keys = iter(jax.random.split(jax.random.key(0), args.repeats + 10))
  ms = median_ms(lambda: sim(next(keys), params), repeats=args.repeats)
  images, catalog = sim(jax.random.key(1), params)
  report(batch=args.batch, image=[cfg.height, cfg.width, cfg.channels],
         margin_cells=cfg.margin, batch_ms=round(ms, 2),
         images_per_s=round(args.batch / ms * 1e3, 1),
         droplets_per_image=round(float(catalog.on_BYX.sum()) / args.batch, 1))


if __name__ == "__main__":
  main()
