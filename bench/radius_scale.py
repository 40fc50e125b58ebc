"""Does a calibrated run's own images say where a droplet's edge is? Held-out RMSE against a
global radius scale s, with the decoder's edge held sharp.

    python bench/radius_scale.py --checkpoint runs/condensation4 --scales 1.0 1.15 1.3 1.5

For each s, every radius the encoder reads (every level of the run's fitted and held-out
real images, as calibration reads them) is multiplied by s, the decoder is refitted from
the calibrated one for ``--steps`` wake steps on the fitted images (every other one) with
its edge fixed at 0.3 px (so it cannot paint a droplet beyond r), and the held-out images
are rendered from their point catalogs (overlaps resolved with the scaled radii, hard core
included). A minimum of the held-out RMSE at s > 1 says the images themselves put the
droplets' edge outside where the encoder reads it; no labels are used. A last line refits
at s = 1 with the edge free, for comparison. The last line printed is one JSON object.
"""

import argparse
import dataclasses
import math
import os
import sys

import jax
import jax.numpy as jnp
import optax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import report  # noqa: E402

from dropamort import checkpoint  # noqa: E402
from dropamort.data.real import crop_positions  # noqa: E402
from dropamort.encoder.cnn import make_encoder  # noqa: E402
from dropamort.model.decoder import edge_width, sharp  # noqa: E402
from dropamort.training.real import RealImages  # noqa: E402
from dropamort.training.step import make_posterior_fn  # noqa: E402
from dropamort.training.wake import WakeViews, make_wake_loss  # noqa: E402



def scaled(read, s: float):
  """The levels' posteriors with every radius times s."""
  return [[dataclasses.replace(lr, posterior=lr.posterior.replace(
      logr_loc_BYX=lr.posterior.logr_loc_BYX + math.log(s))) for lr in levels]
          for levels in read]


def refit(saved, real, read_fit, s: float, held_sharp: bool, steps: int):
  """Decoder params and noise sigma after ``steps`` wake steps at radius scale s."""
  m, c, thr = saved.cfg.model, saved.cfg.calibrate, saved.cfg.trainer.threshold
  size = c.wake_crop // m.cell
  views = WakeViews(real.views(scaled(read_fit, s), thr), size, m.reach_cells, m.cell)
  loss_fn = make_wake_loss(m, size=size, samples=c.wake_samples)
  tx = optax.adam(c.wake_lr)
  params = sharp(saved.decoder_params) if held_sharp else dict(saved.decoder_params)
  trainable = (params, jnp.log(saved.prior.noise_sigma), jnp.zeros(()))  # Scaled here instead.
  opt = tx.init(trainable)

  @jax.jit
  def step(trainable, opt, key, post, images, weights):
    grads = jax.grad(loss_fn)(trainable, key, post, images, weights)
    updates, opt = tx.update(grads, opt, trainable)
    fitted = optax.apply_updates(trainable, updates)
    trainable = (fitted[0], fitted[1], trainable[2])
    if held_sharp:
      trainable = (sharp(trainable[0]), trainable[1], trainable[2])
    return trainable, opt

  key = jax.random.key(0)
  for i in range(steps):
    positions = crop_positions(jax.random.fold_in(key, i), views.grids, c.wake_batch, size)
    trainable, opt = step(trainable, opt, jax.random.fold_in(key, steps + i),
                          *views.batch(positions))
  return trainable


def held_out_rmse(saved, real, read_held, decoder_params, s: float) -> float:
  """Calibration's own record (``RealImages.record``) of the held-out images at scale s."""
  thr = saved.cfg.trainer.threshold
  points = [real.points(decoder_params, levels, thr) for levels in scaled(read_held, s)]
  return real.record(points)["real_rmse"]


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
  posterior_fn = make_posterior_fn(make_encoder(cfg.encoder, cfg.model))
  real = RealImages(cfg.data, cfg.model, cfg.calibrate)
  read_fit = real.read(posterior_fn, saved.params, real.fitted[::2])
  read_held = real.read(posterior_fn, saved.params, real.held_out)
  rows = []
  for s, held_sharp in [(s, True) for s in args.scales] + [(1.0, False)]:
    params, log_sigma, _ = refit(saved, real, read_fit, s, held_sharp, args.steps)
    rmse = held_out_rmse(saved, real, read_held, params, s)
    edge = edge_width(params)
    rows.append({"scale": s, "edge": "sharp" if held_sharp else "free", "edge_px": round(edge, 2),
                 "held_out_rmse": round(rmse, 4),
                 "noise_sigma": round(float(jnp.exp(log_sigma)), 4)})
    print(f"s = {s:.2f}, edge {rows[-1]['edge']} ({edge:.2f} px): held-out RMSE {rmse:.4f}",
          file=sys.stderr, flush=True)
  report(checkpoint=os.path.abspath(args.checkpoint), steps=args.steps, rows=rows)


if __name__ == "__main__":
  main()
