"""The real-image check of a calibrated model on a region calibration never saw.

    python bench/calibration_check.py --checkpoint runs/example --pictures docs/

Reads ../shared/data/example.jpg at scale 0.25, keeps the right third (columns 0.667–1;
calibrate on the left two thirds with data.columns=[0,0.667]), and reports the
reconstruction RMSE of the posterior-mean render, the mean-colour baseline, the inferred
count with its 90% credible interval and blob_log's count on the same region. With
--pictures it writes the overlay zoom, reconstruction, residual and simulated-vs-real
crops there.
"""

import argparse
import dataclasses
import os
import sys

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import report  # noqa: E402

import dropamort  # noqa: E402
from dropamort.config import InferConfig  # noqa: E402
from dropamort.data.images import read_image, resize  # noqa: E402
from dropamort.inference import pictures  # noqa: E402
from dropamort.model.simulate import make_simulate  # noqa: E402

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "example.jpg")


def sim_vs_real(path, reader, region, n=4, size=96):
  cfg = dataclasses.replace(reader.cfg.model, height=size, width=size)
  sims, _ = make_simulate(cfg, n)(jax.random.key(0), reader.predictor.decoder_params,
                                  reader.predictor.prior)
  rng = np.random.default_rng(0)
  fig, axes = plt.subplots(2, n, figsize=(2.6 * n, 5.4))
  for k in range(n):
    y = rng.integers(0, region.shape[0] - size)
    x = rng.integers(0, region.shape[1] - size)
    axes[0, k].imshow(np.clip(np.asarray(sims[k]), 0, 1), interpolation="nearest")
    axes[1, k].imshow(region[y:y + size, x:x + size], interpolation="nearest")
    for ax in axes[:, k]:
      ax.set_axis_off()
  axes[0, 0].set_title("simulated (calibrated model)", loc="left")
  axes[1, 0].set_title("real (held-out region)", loc="left")
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--checkpoint", default="runs/example")
  ap.add_argument("--image", default=EXAMPLE)
  ap.add_argument("--scale", type=float, default=0.25)
  ap.add_argument("--columns", type=float, nargs=2, default=(0.667, 1.0))
  ap.add_argument("--pictures", default=None)
  args = ap.parse_args()
  if not os.path.exists(args.image):
    sys.exit(f"calibration_check: {args.image} not found")
  image = resize(read_image(args.image, 3)[0], args.scale)
  w = image.shape[1]
  region = image[:, int(round(args.columns[0] * w)):int(round(args.columns[1] * w))]
  reader = dropamort.load(args.checkpoint)
  # The region is resized here, so its pixels are not the original ones the edge map is
  # in: read radii (the check is of the reconstruction, which never uses the map).
  result = reader.infer(region, InferConfig(scale=1.0, samples=200, edge_map=False))
  h, w = region.shape[:2]
  recon = reader.reconstruction(result, 0.5)
  rmse = float(np.sqrt(np.mean((recon - region) ** 2)))
  baseline = float(np.sqrt(np.mean((region - region.mean((0, 1))) ** 2)))
  from skimage.feature import blob_log

  n_blob = len(blob_log(1 - region.mean(-1), threshold=0.1))
  count = result.summary["count"]
  out = {"region": [h, w], "reconstruction_rmse": round(rmse, 4),
         "mean_colour_rmse": round(baseline, 4), "goal_rmse": 0.040,
         "count_thresholded": len(result.table), "count_median": count["median"],
         "count_ci90": count["ci90"], "blob_log_count": n_blob}
  if args.pictures:
    os.makedirs(args.pictures, exist_ok=True)
    t = result.table
    comp = t[[f"composition_{k + 1}" for k in range(reader.cfg.model.types)]].to_numpy()
    zoom = (slice(100, 260), slice(20, 169))
    sel = ((t["y"] >= zoom[0].start) & (t["y"] < zoom[0].stop) & (t["x"] >= zoom[1].start)
           & (t["x"] < zoom[1].stop)).to_numpy()
    pictures.save_overlay(os.path.join(args.pictures, "calibrated_overlay_zoom.png"),
                          region[zoom], t["x"][sel] - zoom[1].start,
                          t["y"][sel] - zoom[0].start, t["r"][sel], comp[sel], t["p"][sel],
                          title="held-out region, zoomed: circles at inferred droplets")
    pictures.save_image(os.path.join(args.pictures, "calibrated_reconstruction.png"), recon,
                        title=f"reconstruction of the held-out region (RMSE {rmse:.4f})")
    pictures.save_residual(os.path.join(args.pictures, "calibrated_residual.png"), region,
                           recon, title="held-out region - reconstruction")
    sim_vs_real(os.path.join(args.pictures, "calibrated_sim_vs_real.png"), reader, region)
  report(**out)


if __name__ == "__main__":
  main()
