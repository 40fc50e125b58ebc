"""Does a calibrated run's own images say where a droplet's edge is? Held-out RMSE against a
global radius scale s, with the decoder's edge held sharp.

    python bench/radius_scale.py --checkpoint runs/condensation4 --scales 1.0 1.15 1.3 1.5

The criterion of ``calibrate.outline``'s search (``dropamort.training.outline``) over the
scales given: for each s the decoder is refitted from the calibrated one (edge set to
``decoder.SHARP_EDGE_PX``, so it cannot paint beyond r) for ``--steps`` wake steps on the
fitted images (every other one), every drawn radius times s, and the held-out images are rendered
from their point catalogs at the scaled radii (overlaps resolved, hard core included). A
minimum of the held-out RMSE at s > 1 says the images themselves put the droplets' edge
outside where the encoder reads it; no labels are used. A last line refits at s = 1 with
the edge free, for comparison. The last line printed is one JSON object. (Figures in
docs/benchmarks.md from before commit 3e43b6e built the fitted images' masks under larger
droplets at the scaled radii; now they stay at the reads', as in calibration's search.)
"""

import argparse
import math
import os
import sys

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import report  # noqa: E402

from dropamort import checkpoint  # noqa: E402
from dropamort.model.decoder import edge_width, sharp  # noqa: E402
from dropamort.training import outline  # noqa: E402
from dropamort.training.real import RealImages  # noqa: E402
from dropamort.training.state import make_wake_optimizer  # noqa: E402
from dropamort.inference.predictor import Predictor  # noqa: E402
from dropamort.training.wake import WakeViews  # noqa: E402


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--checkpoint", required=True, help="a calibrated run (data.real set)")
  ap.add_argument("--scales", type=float, nargs="+", default=[1.0, 1.15, 1.3, 1.5])
  ap.add_argument("--steps", type=int, default=300)
  args = ap.parse_args()
  saved = checkpoint.load(args.checkpoint)
  cfg = saved.cfg
  if cfg.data.real is None:
    sys.exit(f"{args.checkpoint}: not a calibrated run (no data.real)")
  m, c, thr = cfg.model, cfg.calibrate, cfg.trainer.threshold
  posteriors = Predictor(cfg, saved.params, saved.decoder_params).posteriors
  real = RealImages(cfg.data, m, c)
  size = c.wake_crop // m.cell
  views = WakeViews(real.views(real.read(posteriors, real.fitted[::2]), thr),
                    size, m.reach_cells, m.cell)
  read_held = real.read(posteriors, real.held_out)
  tx = make_wake_optimizer(c.wake_lr)
  log_sigma = jnp.log(saved.prior.noise_sigma)
  steps = {held: outline.make_refit_step(m, tx, size=size, samples=c.wake_samples,
                                         hold_edge=held) for held in (True, False)}
  rows = []
  for s, held_sharp in [(s, True) for s in args.scales] + [(1.0, False)]:
    step = steps[held_sharp]
    start = sharp(saved.decoder_params) if held_sharp else dict(saved.decoder_params)
    params, sigma = outline.refit(step, tx, views, start, log_sigma, math.log(s),
                                  jax.random.key(0), steps=args.steps, batch=c.wake_batch)
    rmse = outline.held_out_rmse(real, params, read_held, math.log(s), thr)["real_rmse"]
    edge = edge_width(params)
    rows.append({"scale": s, "edge": "sharp" if held_sharp else "free", "edge_px": round(edge, 2),
                 "held_out_rmse": round(rmse, 4),
                 "noise_sigma": round(float(jnp.exp(sigma)), 4)})
    print(f"s = {s:.2f}, edge {rows[-1]['edge']} ({edge:.2f} px): held-out RMSE {rmse:.4f}",
          file=sys.stderr, flush=True)
  report(checkpoint=os.path.abspath(args.checkpoint), steps=args.steps, rows=rows)


if __name__ == "__main__":
  main()
