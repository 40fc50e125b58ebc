"""Where a calibrated model's reconstruction misses the held-out real images, and a picture.

    python bench/real_reconstruction.py --checkpoint runs/condensation9 \
        --pictures docs/real_reconstruction.png

Takes the checkpoint's own calibration images and held-out split (``data.real``,
``data.scale``, ``data.columns``, ``calibrate.holdout``), reads every held-out image as
inference does (the pyramid, no edge map: the render uses read radii) and renders the
point catalog. Reports the pooled RMSE (the calibration log's ``real_rmse``), a flat
mean colour's, each image's, and how the squared error splits over the pixels by their
normalized distance d to the nearest read droplet: inside (d < 0.8), at the edge
(0.8-1.2), in the ring the decoder still paints (1.2-2) and bare background (d >= 2).
For scale, the RMSE of each image against itself blurred (Gaussian, sigma 1, 2, 3 px): how
much of the image lies in detail finer than that. With --pictures: image,
reconstruction and |residual| of a crop of the worst image. The last line is one JSON
object.
"""

import argparse
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy.ndimage import gaussian_filter  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import report  # noqa: E402

import dropamort  # noqa: E402
from dropamort.config import InferConfig  # noqa: E402
from dropamort.data.real import load_real, split_holdout  # noqa: E402
from dropamort.pyramid import point_mask  # noqa: E402

BLURS = (1.0, 2.0, 3.0)  # px
REGIONS = (("inside", 0.0, 0.8), ("edge", 0.8, 1.2), ("ring", 1.2, 2.0),
           ("background", 2.0, np.inf))


def nearest_d(shape, x, y, r) -> np.ndarray:
  """Per pixel, the least (distance to a droplet's centre) / its radius (inf beyond 2 r
  of every droplet)."""
  h, w = shape
  d = np.full((h, w), np.inf)
  for cx, cy, cr in zip(x, y, r):
    reach = 2 * cr
    y0, y1 = max(0, int(cy - reach)), min(h, int(cy + reach) + 2)
    x0, x1 = max(0, int(cx - reach)), min(w, int(cx + reach) + 2)
    if y1 <= y0 or x1 <= x0:  # Entirely outside the image.
      continue
    yy, xx = np.mgrid[y0:y1, x0:x1] + 0.5
    np.minimum(d[y0:y1, x0:x1], np.hypot(xx - cx, yy - cy) / cr, out=d[y0:y1, x0:x1])
  return d


def picture(path, image, recon, rmse, name, size=320):
  """Image, reconstruction and |residual| of the size × size crop with the largest
  squared error (on a coarse grid of candidate crops)."""
  h, w = image.shape[:2]
  size = min(size, h, w)
  err = ((recon - image) ** 2).sum(-1)
  starts = [(y, x) for y in range(0, h - size + 1, size // 4)
            for x in range(0, w - size + 1, size // 4)]
  y, x = max(starts, key=lambda s: err[s[0]:s[0] + size, s[1]:s[1] + size].sum())
  crop = (slice(y, y + size), slice(x, x + size))
  fig, axes = plt.subplots(1, 3, figsize=(15, 5.4))
  axes[0].imshow(image[crop], interpolation="nearest")
  axes[0].set_title(f"{name} (held out), crop at x {x}, y {y}", loc="left")
  axes[1].imshow(np.clip(recon[crop], 0, 1), interpolation="nearest")
  axes[1].set_title(f"reconstruction (image RMSE {rmse:.4f})", loc="left")
  shown = axes[2].imshow(np.sqrt(err[crop] / image.shape[-1]), cmap="magma", vmin=0, vmax=0.4)
  axes[2].set_title("|residual| (RMS over channels)", loc="left")
  fig.colorbar(shown, ax=axes[2], fraction=0.046)
  for ax in axes:
    ax.set_axis_off()
  fig.tight_layout()
  fig.savefig(path, dpi=80)
  plt.close(fig)


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--checkpoint", required=True)
  ap.add_argument("--pictures", default=None, help="PNG path for the worst image's crop")
  args = ap.parse_args()
  reader = dropamort.load(args.checkpoint)
  cfg = reader.cfg
  if cfg.data.real is None:
    sys.exit(f"real_reconstruction: {args.checkpoint} was not calibrated on real images")
  if not os.path.exists(cfg.data.real):
    sys.exit(f"real_reconstruction: its calibration images {cfg.data.real} are not here")
  crop = cfg.calibrate.wake_crop
  _, held = split_holdout(load_real(cfg.data, cfg.model.channels, (crop, crop)),
                          cfg.calibrate.holdout, crop)
  options = InferConfig(scale=1.0, edge_map=False, samples=20, progress=False)
  sq = flat = n = 0.0
  regions = {name: [0.0, 0] for name, _, _ in REGIONS}
  per_image, worst, blurred = [], None, {b: 0.0 for b in BLURS}
  for i, image in enumerate(held):
    result = reader.infer(image, options)  # Already at data.scale: analysed as it is.
    recon = reader.reconstruction(result, options.threshold)
    c = result.candidates
    on = point_mask(c, options.threshold)
    d = nearest_d(image.shape[:2], *(np.asarray(c[k])[on] for k in ("x", "y", "r")))
    err = ((recon - image) ** 2).sum(-1)
    for name, lo, hi in REGIONS:
      inside = (d >= lo) & (d < hi)
      regions[name][0] += float(err[inside].sum())
      regions[name][1] += int(inside.sum())
    sq += float(err.sum())
    for b in BLURS:
      blur = gaussian_filter(image, (b, b, 0))
      blurred[b] += float(((blur - image) ** 2).sum())
    flat += float(((image - image.mean((0, 1))) ** 2).sum())
    n += image.size
    rmse = float(np.sqrt(err.mean() / image.shape[-1]))
    per_image.append(round(rmse, 4))
    if worst is None or rmse > worst[0]:
      worst = (rmse, i, image, recon)
  if args.pictures:
    rmse, i, image, recon = worst
    picture(args.pictures, image, recon, rmse, f"held-out image {i}")
  c = cfg.model.channels
  report(checkpoint=args.checkpoint, images=len(held), real_rmse=round(float(np.sqrt(sq / n)), 4),
         flat_rmse=round(float(np.sqrt(flat / n)), 4), per_image_rmse=per_image,
         blurred_rmse={f"{b:g}px": round(float(np.sqrt(v / n)), 4) for b, v in blurred.items()},
         regions={name: {"pixel_share": round(k / (n / c), 3),
                         "rmse": round(float(np.sqrt(s / max(k * c, 1))), 4),
                         "error_share": round(s / sq, 3)}
                  for name, (s, k) in regions.items()})


if __name__ == "__main__":
  main()
