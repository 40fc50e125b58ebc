"""Quality and time on the same images: dropamort vs refinement, the original SVI and
classical detectors, on droplet_sim/380x507_seed.

    python bench/quality.py [--checkpoint runs/train] [--images 8] [--crops 8]

Rows (F1, position RMSE, radius relative error, ms per image, pooled over the images):
  dropamort single pass; dropamort + 10 / 100 refinement steps; skimage blob_log
  (inverted grey, threshold 0.1); Hough circles (Canny edges, radii 1-8 px); the
  original per-image SVI (bench/seed_svi.py: AutoNormal, Adam 0.01, dense renderer,
  N = the true count) with dropamort's wall time on the whole image, and on 64×64 crops
  with 100× dropamort's wall time and with a long budget.
"""

import argparse
import os
import statistics
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import report  # noqa: E402
from seed_svi import make_seed_svi  # noqa: E402

import dropamort  # noqa: E402
from dropamort.config import InferConfig  # noqa: E402
from dropamort.datasets import store  # noqa: E402
from dropamort.evaluation.measure import inside_image  # noqa: E402
from dropamort.inference.refine import refine_result  # noqa: E402
from dropamort.metrics import detection_metrics  # noqa: E402
from dropamort.model.catalog import to_table  # noqa: E402

CROP = 64
KEYS = ("f1", "precision", "recall", "position_rmse", "radius_rel_error")


def frame_table(df):
  comp = [c for c in df.columns if c.startswith("composition_") and c[12:].isdigit()]
  return {"x": df["x"].to_numpy(), "y": df["y"].to_numpy(), "r": df["r"].to_numpy(),
          "composition": df[comp].to_numpy()}


def xyr_table(x, y, r, types=3):
  x, y, r = (np.asarray(v, float) for v in (x, y, r))
  return {"x": x, "y": y, "r": r, "composition": np.full((len(x), types), np.nan)}


def row(true_tables, pred_tables, times_ms, **extra):
  m = detection_metrics(true_tables, pred_tables)
  out = {k: (round(m[k], 4) if m.get(k) is not None else None) for k in KEYS}
  out["ms_per_image"] = round(statistics.median(times_ms), 1)
  return {**out, **extra}


def blob_log_table(image):
  from skimage.feature import blob_log

  blobs = blob_log(1 - image.mean(-1), threshold=0.1)
  # blob_log gives pixel indices (centre of pixel i is at i + 0.5 in our frame).
  return xyr_table(blobs[:, 1] + 0.5, blobs[:, 0] + 0.5, blobs[:, 2] * np.sqrt(2))


def hough_table(image):
  from skimage.feature import canny
  from skimage.transform import hough_circle, hough_circle_peaks

  radii = np.arange(1, 9)
  edges = canny(1 - image.mean(-1), sigma=0.7)
  acc = hough_circle(edges, radii)
  _, cx, cy, r = hough_circle_peaks(acc, radii, min_xdistance=2, min_ydistance=2,
                                    threshold=0.5, normalize=True)
  return xyr_table(cx + 0.5, cy + 0.5, r)


def timed(fn, *args):
  t0 = time.perf_counter()
  out = jax.block_until_ready(fn(*args))
  return out, (time.perf_counter() - t0) * 1e3


def svi_table(image, n, *, budget_ms=None, steps=None):
  """Runs the original SVI for a wall-time budget (at least one step) or a number of
  steps, compiled beforehand; returns its median droplets, the steps run and their ms."""
  svi, update, state = make_seed_svi(image, max(n, 1))
  step = update.lower(state).compile()
  done, t0 = 0, time.perf_counter()
  while True:
    state, _ = step(state)
    jax.block_until_ready(state)
    done += 1
    elapsed = (time.perf_counter() - t0) * 1e3
    if (steps is not None and done >= steps) or (budget_ms is not None and elapsed >= budget_ms):
      break
  med = svi.guide.median(svi.get_params(state))
  return xyr_table(med["x"], med["y"], med["r"]), done, elapsed


def single_pass(reader, images, cell, h, w):
  """dropamort's tables and forward-pass times (ms) on each image."""
  tables, times = [], []
  for img in images:
    post, ms = timed(reader.predictor.posterior, img)
    times.append(ms)
    tables.append(inside_image(post.to_table(cell, 0.5)[0], h, w))
  return tables, times


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--checkpoint", default=None)
  ap.add_argument("--data-dir", default="datasets")
  ap.add_argument("--images", type=int, default=8)
  ap.add_argument("--crops", type=int, default=8)
  ap.add_argument("--long-steps", type=int, default=5000)
  args = ap.parse_args()
  reader = dropamort.load(args.checkpoint)
  cell = reader.cfg.model.cell
  images, catalog = store.read_sim(store.open_sim("380x507_seed", args.data_dir), args.images)
  h, w = images.shape[1:3]
  truth = to_table(catalog, cell)
  rows = {}

  tables, times = single_pass(reader, images, cell, h, w)
  single_ms = statistics.median(times[1:])
  rows["dropamort single pass"] = row(truth, tables, times[1:])

  for k in (10, 100):
    tables, times = [], []
    for img in images:
      t0 = time.perf_counter()
      # Simulated truth is in the model's own radii: no edge map.
      base = reader.infer(img, InferConfig(scale=1.0, samples=10, edge_map=False))
      refined = refine_result(reader, base, InferConfig(scale=1.0, refine_steps=k,
                                                        edge_map=False))
      times.append((time.perf_counter() - t0) * 1e3)
      tables.append(frame_table(refined.table))
    rows[f"dropamort + {k} refinement steps"] = row(truth, tables, times[1:] or times)

  for name, fn in (("blob_log (threshold 0.1)", blob_log_table), ("Hough circles", hough_table)):
    tables, times = zip(*[timed(fn, img) for img in images])
    rows[name] = row(truth, list(tables), list(times))

  # The original SVI on the whole image with dropamort's wall time (at least one step).
  tables, times, steps = [], [], []
  for img, t in zip(images[:2], truth[:2]):
    tab, done, ms = svi_table(img, len(t["x"]), budget_ms=single_ms)
    tables.append(tab)
    times.append(ms)
    steps.append(done)
  rows["original SVI, dropamort's wall time"] = row(
      truth[:2], tables, times, steps=steps, note="first 2 images; one step is the minimum")

  # 64×64 crops (top-left of each image): dropamort vs SVI at 100× its time and long.
  crops = [img[:CROP, :CROP] for img in images[:args.crops]]
  crop_truth = [inside_image(t, CROP, CROP) for t in truth[:args.crops]]
  tables, times = single_pass(reader, crops, cell, CROP, CROP)
  crop_ms = statistics.median(times[1:])
  rows["64x64 crops: dropamort single pass"] = row(crop_truth, tables, times[1:])
  for label, kw in (("100x dropamort's time", {"budget_ms": 100 * crop_ms}),
                    (f"{args.long_steps} steps", {"steps": args.long_steps})):
    tables, times, steps = [], [], []
    for img, t in zip(crops, crop_truth):
      tab, done, ms = svi_table(img, len(t["x"]), **kw)
      tables.append(tab)
      times.append(ms)
      steps.append(done)
    rows[f"64x64 crops: original SVI, {label}"] = row(crop_truth, tables, times,
                                                      steps_median=statistics.median(steps))
  for name, r in rows.items():
    print(f"{name:48s} F1 {r['f1']}  pos {r['position_rmse']}  rad {r['radius_rel_error']}"
          f"  {r['ms_per_image']} ms")
  report(dataset="droplet_sim/380x507_seed", images=len(images), crops=len(crops),
         true_droplets=int(sum(len(t["x"]) for t in truth)), rows=rows)


if __name__ == "__main__":
  main()
