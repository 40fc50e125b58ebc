"""dropamort against classical detectors on a labelled real image set, in one run.

    python bench/real.py --images ../shared/data/condensation
    python bench/real.py --images ../shared/data/condensation --checkpoint runs/condensation
    python bench/real.py --images DIR --labels labels.csv -- calibrate.rounds=2 trainer.steps=2000

Calibrates dropamort on the images WITHOUT their labels (``train.py data.real=DIR`` with
the given overrides, resumable in --run-dir) unless --checkpoint is given, reads every
image with no hand-picked scale (the pyramid), and scores it and the classical peers
(bench/peers.py; parameters tuned on the first --tune images by name) against
``labels.csv`` (image, x, y, r) under the labelled-set rule of dropamort.metrics
(labels r >= 6 px, predictions r >= 4.2 px, match within max(2 px, 0.5 r); a set labelled
down to another radius: --label-r-min, predictions then from 0.7 of it). Reports all
images and the images outside the tuning subset, dropamort's reconstruction RMSE on the
images the calibration held out of its wake fit, dropamort's recall by labelled radius
(octaves from the minimum), and pictures (overlay zooms of the best and worst images) in
--out. The last line printed is one JSON object.
"""

import argparse
import dataclasses
import functools
import os
import sys
import time

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import report  # noqa: E402
import peers  # noqa: E402

import dropamort  # noqa: E402
from dropamort.read_config import InferConfig  # noqa: E402
from dropamort.data.images import find_images, read_image  # noqa: E402
from dropamort.data.real import held_out_paths  # noqa: E402
from dropamort.metrics import (PRED_FACTOR, REAL_MIN_TOL, false_by_radius,  # noqa: E402
                               labelled_scores, match, recall_by_radius)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEYS = ("precision", "recall", "f1", "radius_rel_err_median", "coverage_x", "coverage_y",
        "coverage_r")


def calibrate(images_dir: str, run_dir: str, overrides: list[str]) -> str:
  """Runs (or resumes) dropamort's calibration on the images, without labels."""
  from hydra import compose, initialize_config_dir

  from dropamort.cli import quiet_libraries, use_compilation_cache
  from dropamort.config import register_configs, to_dataclass
  from dropamort.training.loop import train

  quiet_libraries()
  use_compilation_cache()
  register_configs()
  with initialize_config_dir(config_dir=os.path.join(ROOT, "conf"), version_base="1.3"):
    cfg = to_dataclass(compose(config_name="train", overrides=[
        f"data.real={os.path.abspath(images_dir)}", *overrides]))
  t0 = time.perf_counter()
  result = train(cfg, run_dir)
  print(f"calibration: {time.perf_counter() - t0:.0f} s, step {result['step']}",
        file=sys.stderr)
  return run_dir


def scores(truth: dict, preds: dict, names: list[str], rule) -> dict:
  s = rule([truth[n] for n in names], [preds[n] for n in names])
  return {k: (None if not np.isfinite(s.get(k, np.nan)) else round(float(s[k]), 4))
          for k in KEYS if k in s}


def bin_names(edges: list[float]) -> list[str]:
  """"lo-hi" per bin [edges[k], edges[k + 1]), "lo+" for the last (open) one."""
  return [f"{lo:g}+" if k + 1 == len(edges) else f"{lo:g}-{edges[k + 1]:g}"
          for k, lo in enumerate(edges)]


def read_dropamort(reader, images: dict, held_out: set):
  """Tables (original px, p > 0.5) per image, and the reconstruction RMSE pooled over the
  held-out images (and a flat mean colour's)."""
  tables, sq, flat, n = {}, 0.0, 0.0, 0
  for name, image in images.items():
    result = reader.infer(image, InferConfig(samples=50, progress=False))
    t = result.table
    tables[name] = {k: t[k].to_numpy() for k in ("x", "y", "r", "x_q05", "x_q95", "y_q05",
                                                  "y_q95", "r_q05", "r_q95")}
    if name in held_out:
      recon = reader.reconstruction(result, 0.5)
      sq += float(np.sum((recon - result.image) ** 2))
      flat += float(np.sum((result.image - result.image.mean((0, 1))) ** 2))
      n += result.image.size
  rmse = lambda v: round(float(np.sqrt(v / n)), 4) if n else None
  return tables, rmse(sq), rmse(flat)


def pictures(out: str, images: dict, truth: dict, tables: dict, r_min: float) -> list[str]:
  """Overlay zooms (labels green, dropamort red; unmatched thicker) of the images where
  dropamort scores best and worst, under the labelled-set rule from ``r_min``."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  from dropamort.figures import draw_catalog, save_figure
  from dropamort.metrics import above

  f1 = {n: labelled_scores([truth[n]], [tables[n]], label_r_min=r_min)["f1"] for n in images}
  ranked = sorted((v, n) for n, v in f1.items() if np.isfinite(v))
  written = []
  for tag, (_, name) in (("worst", ranked[0]), ("best", ranked[-1])):
    image = images[name]
    t, p = above(truth[name], r_min), above(tables[name], PRED_FACTOR * r_min)
    h, w = image.shape[:2]
    y0, x0 = h // 4, w // 4
    zoom = (slice(y0, y0 + h // 2), slice(x0, x0 + w // 2))
    shift = lambda tab: {"x": tab["x"] - x0, "y": tab["y"] - y0, "r": tab["r"]}
    i, j = match(t, p, min_tol=REAL_MIN_TOL, rel_tol=0.5)
    miss = np.setdiff1d(np.arange(len(t["x"])), i)
    false = np.setdiff1d(np.arange(len(p["x"])), j)
    sub = lambda tab, k: {c: np.asarray(tab[c])[k] for c in ("x", "y", "r")}
    fig, ax = plt.subplots(figsize=(8, 5.6))
    ax.imshow(image[zoom], interpolation="nearest")
    draw_catalog(ax, shift(sub(t, i)), color="lime", linewidth=0.8)
    draw_catalog(ax, shift(sub(p, j)), color="red", linewidth=0.8)
    draw_catalog(ax, shift(sub(t, miss)), color="lime", linewidth=2.2)
    draw_catalog(ax, shift(sub(p, false)), color="red", linewidth=2.2)
    ax.set_xlim(-0.5, w // 2 - 0.5)
    ax.set_ylim(h // 2 - 0.5, -0.5)
    ax.set_axis_off()
    ax.set_title(f"{name} ({tag}, F1 {f1[name]:.2f}): labels green, dropamort red; "
                 "thick = missed / false", fontsize=9)
    fig.tight_layout()
    path = os.path.join(out, f"real_{tag}.png")
    save_figure(fig, path, dpi=110)
    written.append(path)
  return written


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--images", required=True, help="folder of images (labels.csv beside)")
  ap.add_argument("--labels", default=None, help="default: labels.csv beside the images")
  ap.add_argument("--checkpoint", default=None, help="a calibrated run to reuse")
  ap.add_argument("--run-dir", default="runs/real")
  ap.add_argument("--out", default=None, help="folder for the pictures")
  ap.add_argument("--tune", type=int, default=5, help="peers tune on the first N images")
  ap.add_argument("--peers", nargs="*", default=list(peers.PEERS))
  ap.add_argument("--label-r-min", type=float, default=6.0,
                  help="labels below this radius (original px) are not scored (default 6)")
  ap.add_argument("overrides", nargs="*", help="train.py overrides for the calibration")
  args = ap.parse_args()
  folder = args.images.rstrip("/")
  image_dir = os.path.join(folder, "images") if os.path.isdir(
      os.path.join(folder, "images")) else folder
  labels_path = args.labels or os.path.join(folder, "labels.csv")
  if not os.path.isfile(labels_path):
    sys.exit(f"real: {labels_path}: no labels.csv (give --labels)")
  paths = find_images(image_dir)
  images = {os.path.basename(p): read_image(p, 3)[0] for p in paths}
  labels = pd.read_csv(labels_path)
  truth = {n: {k: labels.loc[labels["image"] == n, k].to_numpy(float) for k in ("x", "y", "r")}
           for n in images}
  names = sorted(images)
  tuning, rest = names[:args.tune], names[args.tune:]
  t0 = time.perf_counter()
  run = args.checkpoint or calibrate(image_dir, args.run_dir, args.overrides)
  reader = dropamort.load(run)
  # The images the calibration held out of its wake fit (data.real.split_holdout), as its
  # own data config chose them; a model calibrated elsewhere (or on simulations only) is
  # judged on the images this folder's split would hold out.
  data = reader.cfg.data
  if data.real is None or not os.path.exists(data.real):
    data = dataclasses.replace(data, real=image_dir)
  held = {os.path.basename(p) for p in held_out_paths(data, reader.cfg.calibrate.holdout)}
  tables, rmse, flat = read_dropamort(reader, images, held)
  r_min = args.label_r_min
  rule = functools.partial(labelled_scores, label_r_min=r_min)
  edges = [PRED_FACTOR * r_min, r_min, 4 / 3 * r_min, 2 * r_min, 4 * r_min]
  false = false_by_radius([truth[n] for n in names], [tables[n] for n in names], edges,
                          label_r_min=r_min)
  octaves = [r_min * 2**k for k in range(5)]
  recall = recall_by_radius([truth[n] for n in names], [tables[n] for n in names], octaves,
                            label_r_min=r_min)
  out = {"dropamort": {**scores(truth, tables, names, rule),
                       "rest": scores(truth, tables, rest, rule),
                       "false_by_read_radius": dict(zip(bin_names(edges), false)),
                       "recall_by_label_radius": {
                           name: {**b, "recall": None if b["recall"] is None else
                                  round(b["recall"], 4)}
                           for name, b in zip(bin_names(octaves), recall)},
                       "reconstruction_rmse_held_out": rmse, "flat_colour_rmse_held_out": flat,
                       "seconds": round(time.perf_counter() - t0, 1)}}
  for name in args.peers:
    t1 = time.perf_counter()
    params, _ = peers.tune(name, [images[n] for n in tuning], [truth[n] for n in tuning],
                           rule)
    preds = {n: peers.detect(name, images[n], params) for n in names}
    out[name] = {**scores(truth, preds, names, rule), "rest": scores(truth, preds, rest, rule),
                 "params": params, "seconds": round(time.perf_counter() - t1, 1)}
  best_peer = max((out[n]["f1"] or 0.0) for n in args.peers) if args.peers else None
  out["summary"] = {"images": len(names), "tuning_images": tuning,
                    "held_out_images": sorted(held), "best_peer_f1": best_peer,
                    "margin_over_best_peer": None if best_peer is None or out["dropamort"]["f1"]
                    is None else round(out["dropamort"]["f1"] - best_peer, 4)}
  if args.out:
    os.makedirs(args.out, exist_ok=True)
    out["summary"]["pictures"] = pictures(args.out, images, truth, tables, r_min)
  report(**out)


if __name__ == "__main__":
  main()
