"""Quality on simulations, with the time of each method: dropamort against refinement and
classical detectors on droplet_sim/380x507_seed; with flags, the original per-image SVI,
the amortization gap, the lab figures' credible intervals and the example's held-out region.

    python bench/quality.py [--checkpoint runs/train] [--images 8]
    python bench/quality.py --svi [--crops 8] [--long-steps 5000]
    python bench/quality.py --no-table --gap [--gap-images 2]
    python bench/quality.py --no-table --intervals [--interval-images 64]
    python bench/quality.py --no-table --example --checkpoint example

The table (rows: F1, precision, recall, position RMSE, radius relative error, ms per
image, pooled over the images): dropamort single pass; dropamort + 10 / 100 refinement
steps; skimage blob_log (inverted grey, threshold 0.1); Hough circles (Canny edges, radii
1-8 px).
--svi: the original per-image model (``seed_model``: flat sites, dense renderer, AutoNormal,
  Adam 0.01, N = the true count) on the whole image for dropamort's wall time, and on
  64×64 crops for 100× dropamort's wall time and for --long-steps steps.
--gap: the ELBO (16 particles, the same key) of the refinement guide after K = 10, 100 and
  1000 steps, each K started again from the encoder's posterior; the gap is
  ELBO(K) − ELBO(0), per image and per pixel value (H·W·C).
--intervals: how often the summary's 90 % intervals (count, coverage, D50, D32; infer's
  pyramid, 200 posterior samples) hold the figure computed from the true catalog
  (droplets centred in the image; coverage = Σ π r² / image area).
--example: ../shared/data/example.jpg at scale 0.25, its right third (columns 0.667-1,
  which the bundled example model's calibration never saw): reconstruction RMSE, the
  mean colour's, the counts.
The last line printed is one JSON object.
"""

import argparse
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
from numpyro.contrib.module import random_flax_module
from numpyro.infer import SVI, Trace_ELBO
from numpyro.infer.autoguide import AutoNormal

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import report  # noqa: E402

import dropamort  # noqa: E402
from dropamort.read_config import InferConfig  # noqa: E402
from dropamort.datasets import store  # noqa: E402
from dropamort.evaluation.measure import inside_image  # noqa: E402
from dropamort.inference.refine import refine_result  # noqa: E402
from dropamort.inference.stats import per_sample  # noqa: E402
from dropamort.metrics import detection_metrics  # noqa: E402
from dropamort.model.catalog import to_table  # noqa: E402
from dropamort.model.decoder import DropletOpticsModel  # noqa: E402
from dropamort.model.render import render_dense  # noqa: E402

CROP = 64
KEYS = ("f1", "precision", "recall", "position_rmse", "radius_rel_error")
GAP_STEPS = (10, 100, 1000)
FIGURES = {"count": ("count",), "coverage": ("coverage",), "D50": ("diameter_px", "D50"),
           "D32": ("diameter_px", "D32")}
EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "example.jpg")


# --- the original per-image model ----------------------------------------------------

def seed_model(image_HWC, n_droplets: int, types: int = 3):
  """N droplets as flat sites (x ~ U(0, W), y ~ U(0, H), r ~ LogNormal(0, 0.5),
  composition ~ U(0,1)^T), decoder weights with Normal(0, 1) priors, every pixel rendered
  from its nearest droplet by the dense renderer, Normal(prediction, 0.05) likelihood."""
  h, w, c = image_HWC.shape
  bg = numpyro.sample("bg", dist.Uniform(0, 1).expand([c]).to_event(1))
  with numpyro.plate("droplets", n_droplets):
    x = numpyro.sample("x", dist.Uniform(0, w))
    y = numpyro.sample("y", dist.Uniform(0, h))
    r = numpyro.sample("r", dist.LogNormal(0.0, 0.5))
    comp = numpyro.sample("composition", dist.Uniform(0, 1).expand([types]).to_event(1))
  z = jnp.zeros((1,))
  decode = random_flax_module("decoder", DropletOpticsModel(channels=c), dist.Normal(0, 1),
                              jnp.zeros((1, c)), z, z, z, jnp.zeros((1, types)))
  # The seed had no reach cut-off: every pixel takes its nearest droplet's value.
  mean = render_dense(decode, x, y, r, comp, jnp.ones(n_droplets, bool),
                      jnp.broadcast_to(bg, (h, w, c)), height=h, width=w, reach=1e6)
  numpyro.sample("obs", dist.Normal(mean, 0.05).to_event(3), obs=image_HWC)


def make_seed_svi(image_HWC, n_droplets: int):
  """(svi, jitted update, initial state) for the original model on one image (AutoNormal
  guide, Adam 0.01)."""
  svi = SVI(seed_model, AutoNormal(seed_model), optax.adam(0.01), Trace_ELBO())
  state = svi.init(jax.random.key(0), image_HWC, n_droplets)
  update = jax.jit(lambda s: svi.update(s, image_HWC, n_droplets))
  return svi, update, jax.device_put(state, jax.devices()[0])


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


# --- tables and rows -----------------------------------------------------------------

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


def single_pass(reader, images, h, w):
  """dropamort's tables and forward-pass times (ms) on each image."""
  tables, times = [], []
  for img in images:
    post, ms = timed(reader.predictor.posterior, img)
    times.append(ms)
    tables.append(inside_image(post.to_table(reader.cfg.model.cell, 0.5)[0], h, w))
  return tables, times


# --- sections ------------------------------------------------------------------------

def detection_rows(reader, images, truth) -> dict:
  h, w = images.shape[1:3]
  tables, times = single_pass(reader, images, h, w)
  rows = {"dropamort single pass": row(truth, tables, times[1:])}
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
  return rows


def svi_rows(reader, images, truth, crops: int, long_steps: int) -> dict:
  """The original SVI on the first 2 whole images for dropamort's wall time (one step at
  least), and on the top-left 64×64 crops for 100× dropamort's time and for long_steps."""
  h, w = images.shape[1:3]
  single_ms = statistics.median(single_pass(reader, images, h, w)[1][1:])
  out = svi_runs(images[:2], truth[:2], budget_ms=single_ms)
  rows = {"original SVI, dropamort's wall time": {
      **out, "note": "first 2 images; one step is the minimum"}}
  crop_images = [img[:CROP, :CROP] for img in images[:crops]]
  crop_truth = [inside_image(t, CROP, CROP) for t in truth[:crops]]
  tables, times = single_pass(reader, crop_images, CROP, CROP)
  rows["64x64 crops: dropamort single pass"] = row(crop_truth, tables, times[1:])
  crop_ms = statistics.median(times[1:])
  for label, kw in (("100x dropamort's time", {"budget_ms": 100 * crop_ms}),
                    (f"{long_steps} steps", {"steps": long_steps})):
    rows[f"64x64 crops: original SVI, {label}"] = svi_runs(crop_images, crop_truth, **kw)
  return rows


def svi_runs(images, truth, **budget) -> dict:
  tables, times, steps = [], [], []
  for img, t in zip(images, truth):
    tab, done, ms = svi_table(img, len(t["x"]), **budget)
    tables.append(tab)
    times.append(ms)
    steps.append(done)
  return row(truth, tables, times, steps=steps)


def amortization_gap(reader, images) -> dict:
  per_image = []
  for i, img in enumerate(images):
    base = reader.infer(img, InferConfig(scale=1.0, samples=10))
    rec = {"image": i}
    for k in GAP_STEPS:
      t0 = time.perf_counter()
      info = refine_result(reader, base,
                           InferConfig(scale=1.0, refine_steps=k)).summary["refinement"]
      rec["elbo_0"] = round(info["elbo_before"], 1)
      rec[f"elbo_{k}"] = round(info["elbo_after"], 1)
      rec[f"seconds_{k}"] = round(time.perf_counter() - t0, 1)
      print(f"image {i}: K={k}: ELBO {info['elbo_before']:.0f} -> {info['elbo_after']:.0f}",
            file=sys.stderr, flush=True)
    per_image.append(rec)
  gap = {k: statistics.mean(r[f"elbo_{k}"] - r["elbo_0"] for r in per_image) for k in GAP_STEPS}
  return {"images": len(images), "per_image": per_image,
          "mean_gap": {f"gap_{k}": round(v, 1) for k, v in gap.items()},
          "mean_gap_per_pixel_value": {f"{k}_per_pixel": round(v / images[0].size, 4)
                                       for k, v in gap.items()}}


def truth_figures(r, area: float) -> dict:
  """Count, coverage, D50 and D32 of a true catalog's radii on an image of ``area`` px²."""
  r = np.asarray(r, float)
  s = per_sample(np.ones((1, len(r)), bool), r[None], area_px=area, pixel_size=None)
  return {k: float(s[k][0]) for k in FIGURES}


def interval_rates(reader, images, truth) -> dict:
  """The rate at which each lab figure's 90 % interval holds the truth, and the median
  interval width relative to the truth."""
  inside = {k: [] for k in FIGURES}
  width = {k: [] for k in FIGURES}
  for image, table in zip(images, truth):
    h, w = image.shape[:2]
    keep = (table["x"] < w) & (table["y"] < h)
    true = truth_figures(table["r"][keep], h * w)
    lab = reader.infer(image, InferConfig(scale=1.0, samples=200, progress=False,
                                          edge_map=False)).summary  # Truth: read radii.
    lab = {**lab["lab"], "count": lab["count"]}
    for name, path in FIGURES.items():
      iv = lab
      for part in path:
        iv = iv[part]
      lo, hi = iv["ci90"]
      inside[name].append(lo <= true[name] <= hi)
      width[name].append((hi - lo) / max(abs(true[name]), 1e-9))
  return {"images": len(images),
          **{f"ci90_rate_{k}": round(float(np.mean(v)), 3) for k, v in inside.items()},
          **{f"ci90_rel_width_{k}": round(float(np.median(v)), 4) for k, v in width.items()}}


def example_region(reader, path: str = EXAMPLE, columns=(0.667, 1.0)) -> dict:
  """The example's held-out right third: reconstruction RMSE against the mean colour's."""
  from skimage.feature import blob_log

  from dropamort.data.images import read_image, resize

  image = resize(read_image(path, 3)[0], 0.25)
  w = image.shape[1]
  region = image[:, int(round(columns[0] * w)):int(round(columns[1] * w))]
  # The region is resized here, so its pixels are not the original ones the edge map is
  # in: read radii (the check is of the reconstruction, which never uses the map).
  result = reader.infer(region, InferConfig(scale=1.0, samples=200, edge_map=False))
  recon = reader.reconstruction(result, 0.5)
  count = result.summary["count"]
  return {"region": list(region.shape[:2]),
          "reconstruction_rmse": round(float(np.sqrt(np.mean((recon - region) ** 2))), 4),
          "mean_colour_rmse": round(float(np.sqrt(np.mean(
              (region - region.mean((0, 1))) ** 2))), 4),
          "count_thresholded": len(result.table), "count_median": count["median"],
          "count_ci90": count["ci90"],
          "blob_log_count": len(blob_log(1 - region.mean(-1), threshold=0.1))}


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--checkpoint", default=None)
  ap.add_argument("--data-dir", default="datasets")
  ap.add_argument("--images", type=int, default=8, help="images for the table and --svi")
  ap.add_argument("--no-table", action="store_true", help="skip the detection table")
  ap.add_argument("--svi", action="store_true", help="add the original per-image SVI")
  ap.add_argument("--crops", type=int, default=8)
  ap.add_argument("--long-steps", type=int, default=5000)
  ap.add_argument("--gap", action="store_true", help="add the amortization gap")
  ap.add_argument("--gap-images", type=int, default=2)
  ap.add_argument("--intervals", action="store_true", help="add the lab figures' intervals")
  ap.add_argument("--interval-images", type=int, default=None, help="default: all 64")
  ap.add_argument("--example", action="store_true", help="add the example's right third")
  args = ap.parse_args()
  reader = dropamort.load(args.checkpoint)
  out = {}

  def simulated():  # Built on first use; only the sections that need it open it.
    out["dataset"] = "droplet_sim/380x507_seed"
    return store.open_sim("380x507_seed", args.data_dir)

  if not args.no_table or args.svi:
    images, catalog = store.read_sim(simulated(), args.images)
    truth = to_table(catalog, reader.cfg.model.cell)
    out.update(images=len(images), true_droplets=int(sum(len(t["x"]) for t in truth)))
    rows = {} if args.no_table else detection_rows(reader, images, truth)
    if args.svi:
      rows.update(svi_rows(reader, images, truth, args.crops, args.long_steps))
    for name, r in rows.items():
      print(f"{name:48s} F1 {r['f1']}  pos {r['position_rmse']}  rad {r['radius_rel_error']}"
            f"  {r['ms_per_image']} ms", file=sys.stderr)
    out["rows"] = rows
  if args.gap:
    out["gap"] = amortization_gap(reader, store.read_sim(simulated(), args.gap_images)[0])
  if args.intervals:
    builder = simulated()
    images, catalog = store.read_sim(builder, args.interval_images)
    out["intervals"] = interval_rates(reader, images,
                                      to_table(catalog, builder.info.metadata["model"]["cell"]))
  if args.example:
    if not os.path.exists(EXAMPLE):
      sys.exit(f"quality: {EXAMPLE} not found")
    out["example"] = example_region(reader)
  report(**out)


if __name__ == "__main__":
  main()
