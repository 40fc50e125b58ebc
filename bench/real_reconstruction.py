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

Two estimates of what a better model of the same kind could reach (estimates, not strict
bounds):
- ``smooth_field_rmse``: the RMSE left once the residual's part smoother than a Gaussian
  of sigma 4, 8, 16 px is added to the reconstruction, roughly what a background free to
  follow the image at that scale would leave (the model's field has knots every
  ``model.background_knot`` px).
- with labels (``labels.csv`` beside the images folder, or --labels; original px), the
  labelled droplets (r >= --label-r-min px, the scoring rule) the read misses: their
  discs' share of the pixels and of the error, and the RMSE had they been reconstructed
  as well as the discs of the labelled droplets it finds, on average (``all_found_rmse``).
"""

import argparse
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Circle  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy.ndimage import gaussian_filter  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import report  # noqa: E402

import dropamort  # noqa: E402
from dropamort.config import InferConfig  # noqa: E402
from dropamort.data.images import read_image  # noqa: E402
from dropamort.data.real import holdout_indices, read_real, split_holdout  # noqa: E402
from dropamort.metrics import LABEL_R_MIN, PRED_FACTOR, REAL_MIN_TOL, above, match  # noqa: E402
from dropamort.pyramid import point_mask  # noqa: E402

BLURS = (1.0, 2.0, 3.0)  # px
SMOOTH = (4.0, 8.0, 16.0)  # px
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


def missed_and_found(truth: dict, table: dict, shape, scale: float,
                     r_min: float = LABEL_R_MIN):
  """The labelled droplets (r >= ``r_min`` px) that ``table`` misses, under the labelled-set rule
  (``dropamort.metrics.labelled_scores``), and pixel masks of the discs of those it misses
  and finds; ``truth`` and ``table`` in original px, the missed droplets and the masks on
  the analysed grid (``scale`` × original px).

  Returns:
    (missed {"x", "y", "r"}, missed_mask, found_mask).
  """
  t, p = above(truth, r_min), above(table, PRED_FACTOR * r_min)
  i, _ = match(t, p, min_tol=REAL_MIN_TOL, rel_tol=0.5)
  found = np.zeros(len(t["x"]), bool)
  found[i] = True
  circles = lambda keep: {k: np.asarray(t[k])[keep] * scale for k in ("x", "y", "r")}
  discs = lambda c: nearest_d(shape, c["x"], c["y"], c["r"]) <= 1  # Pixels inside any.
  missed = circles(~found)
  missed_mask = discs(missed)
  return missed, missed_mask, discs(circles(found)) & ~missed_mask


def held_truth(cfg, labels_path: str, held: list[tuple[str, np.ndarray]]):
  """The labels of the held-out images (``held``: path, image as calibration read it), in
  original px with x from the ``data.columns`` cut, only those centred inside the cut;
  None without a labels file, or when the held-out images are not whole images (one image
  split by columns)."""
  if not os.path.isfile(labels_path) or len(held) < 1 or held[0][0] is None:
    return None
  labels = pd.read_csv(labels_path)
  s = cfg.data.scale
  out = []
  for path, image in held:
    rows = labels[labels["image"] == os.path.basename(path)]
    width = read_image(path, cfg.model.channels)[0].shape[1]  # As calibration read it.
    x0 = int(round(cfg.data.columns[0] * max(1, int(round(width * s))))) / s  # Original px.
    x, y = rows["x"].to_numpy(float) - x0, rows["y"].to_numpy(float)
    inside = (x >= 0) & (x < image.shape[1] / s) & (y >= 0) & (y < image.shape[0] / s)
    out.append({"x": x[inside], "y": y[inside], "r": rows["r"].to_numpy(float)[inside]})
  return out


def picture(path, image, recon, rmse, name, missed=None, size=320):
  """Image, reconstruction and |residual| of the size × size crop with the largest
  squared error (on a coarse grid of candidate crops); the labelled droplets the read
  missed (``missed``, analysed px) drawn dashed on the image and the residual."""
  h, w = image.shape[:2]
  size = min(size, h, w)
  err = ((recon - image) ** 2).sum(-1)
  starts = [(y, x) for y in range(0, h - size + 1, size // 4)
            for x in range(0, w - size + 1, size // 4)]
  y, x = max(starts, key=lambda s: err[s[0]:s[0] + size, s[1]:s[1] + size].sum())
  crop = (slice(y, y + size), slice(x, x + size))
  fig, axes = plt.subplots(1, 3, figsize=(15, 5.8))
  axes[0].imshow(image[crop], interpolation="nearest")
  axes[0].set_title(f"{name} (held out), crop at x {x}, y {y}", loc="left")
  axes[1].imshow(np.clip(recon[crop], 0, 1), interpolation="nearest")
  axes[1].set_title(f"reconstruction (image RMSE {rmse:.4f})", loc="left")
  shown = axes[2].imshow(np.sqrt(err[crop] / image.shape[-1]), cmap="magma", vmin=0, vmax=0.4)
  axes[2].set_title("|residual| (RMS over channels)", loc="left")
  fig.colorbar(shown, ax=axes[2], fraction=0.046)
  if missed is not None and len(missed["x"]):
    for ax in (axes[0], axes[2]):
      for cx, cy, cr in zip(missed["x"] - x - 0.5, missed["y"] - y - 0.5, missed["r"]):
        ax.add_patch(Circle((cx, cy), cr, fill=False, ls="--", lw=1.2, color="cyan"))
      ax.set_xlim(-0.5, size - 0.5)
      ax.set_ylim(size - 0.5, -0.5)
    axes[0].set_title(f"{name} (held out), crop at x {x}, y {y};\nlabelled droplets the read "
                      "missed dashed", loc="left")
  for ax in axes:
    ax.set_axis_off()
  fig.tight_layout()
  fig.savefig(path, dpi=80)
  plt.close(fig)


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--checkpoint", required=True)
  ap.add_argument("--pictures", default=None, help="PNG path for the worst image's crop")
  ap.add_argument("--label-r-min", type=float, default=LABEL_R_MIN,
                  help="labels below this radius (original px) are not scored (default 6)")
  ap.add_argument("--labels", default=None,
                  help="labels.csv (image, x, y, r; original px); default: beside the images "
                       "folder, if there")
  args = ap.parse_args()
  reader = dropamort.load(args.checkpoint)
  cfg = reader.cfg
  if cfg.data.real is None:
    sys.exit(f"real_reconstruction: {args.checkpoint} was not calibrated on real images")
  if not os.path.exists(cfg.data.real):
    sys.exit(f"real_reconstruction: its calibration images {cfg.data.real} are not here")
  crop = cfg.calibrate.wake_crop
  read = read_real(cfg.data, cfg.model.channels, (crop, crop))  # As calibration read them.
  _, held = split_holdout([image for _, image in read], cfg.calibrate.holdout, crop)
  held_paths = ([read[i][0] for i in holdout_indices(len(read), cfg.calibrate.holdout)]
                if len(read) >= 2 else [None])
  options = InferConfig(scale=1.0, edge_map=False, samples=20, progress=False)
  labels = args.labels or os.path.join(os.path.dirname(cfg.data.real.rstrip("/")), "labels.csv")
  truth = held_truth(cfg, labels, list(zip(held_paths, held)))
  if args.labels and truth is None:
    sys.exit(f"real_reconstruction: no labels of whole held-out images from {args.labels}")
  s_ = cfg.data.scale
  sq = flat = n = 0.0
  regions = {name: [0.0, 0] for name, _, _ in REGIONS}
  per_image, worst, blurred, missed = [], None, {b: 0.0 for b in BLURS}, None
  smooth = {s: 0.0 for s in SMOOTH}
  labelled = {"missed": [0.0, 0], "found": [0.0, 0]}
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
    resid = recon - image
    for sigma in SMOOTH:
      smooth[sigma] += float(((resid - gaussian_filter(resid, (sigma, sigma, 0))) ** 2).sum())
    if truth is not None:  # The labelled-set rule scores the table: edge radii, original px.
      table = reader.table(c, (1 / s_, 1 / s_), InferConfig(edge_map=True))
      missed, *masks = missed_and_found(
          truth[i], {k: table[k].to_numpy() for k in ("x", "y", "r")}, image.shape[:2], s_,
          args.label_r_min)
      for name, mask in zip(("missed", "found"), masks):
        labelled[name][0] += float(err[mask].sum())
        labelled[name][1] += int(mask.sum())
    for b in BLURS:
      blur = gaussian_filter(image, (b, b, 0))
      blurred[b] += float(((blur - image) ** 2).sum())
    flat += float(((image - image.mean((0, 1))) ** 2).sum())
    n += image.size
    rmse = float(np.sqrt(err.mean() / image.shape[-1]))
    per_image.append(round(rmse, 4))
    if worst is None or rmse > worst[0]:
      worst = (rmse, i, image, recon, missed)
  if args.pictures:
    rmse, i, image, recon, missed = worst
    picture(args.pictures, image, recon, rmse, f"held-out image {i}", missed)
  c = cfg.model.channels
  rms = lambda v, count: round(float(np.sqrt(v / max(count, 1))), 4)
  extra = {}
  if truth is not None:
    (s_miss, k_miss), (s_found, k_found) = labelled["missed"], labelled["found"]
    extra["labelled_droplets"] = {
        "missed_pixel_share": round(k_miss / (n / c), 3), "missed_rmse": rms(s_miss, k_miss * c),
        "missed_error_share": round(s_miss / sq, 3), "found_rmse": rms(s_found, k_found * c),
        "all_found_rmse": rms(sq - s_miss + k_miss * s_found / max(k_found, 1), n)}
  report(checkpoint=args.checkpoint, images=len(held), real_rmse=rms(sq, n),
         flat_rmse=rms(flat, n), per_image_rmse=per_image,
         blurred_rmse={f"{b:g}px": rms(v, n) for b, v in blurred.items()},
         regions={name: {"pixel_share": round(k / (n / c), 3), "rmse": rms(s, k * c),
                         "error_share": round(s / sq, 3)}
                  for name, (s, k) in regions.items()},
         smooth_field_rmse={f"{sigma:g}px": rms(v, n) for sigma, v in smooth.items()}, **extra)


if __name__ == "__main__":
  main()
