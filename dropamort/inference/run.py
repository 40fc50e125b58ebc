"""``infer.py``'s job: images in, per-image outputs and a combined table out.

Images are read ``infer.batch`` at a time and encoded together (split over all local
devices). Each image's outputs are written to a hidden temporary folder and renamed into
place when complete, so a failure never leaves partial outputs that look finished.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time

import numpy as np
import pandas as pd
from tqdm import tqdm

from dropamort.read_config import InferConfig
from dropamort.data.images import ImageError, find_images, read_image
from dropamort.inference import pictures, report, stats
from dropamort.inference.api import DropletReader, Result


def write_outputs(result: Result, reader: DropletReader, out_dir: str, options: InferConfig,
                  notes: list[str], source: str) -> None:
  """catalog.csv/.parquet, summary.json and pictures, atomically into ``out_dir``."""
  tmp = os.path.join(os.path.dirname(out_dir), "." + os.path.basename(out_dir) + ".partial")
  shutil.rmtree(tmp, ignore_errors=True)
  os.makedirs(tmp)
  try:
    summary = dict(result.summary, source=os.path.abspath(source), notes=notes)
    t0 = time.perf_counter()
    if options.pictures:
      _pictures(result, reader, tmp, summary, options)
    summary["timings_s"]["pictures"] = round(time.perf_counter() - t0, 3)
    result.table.to_csv(os.path.join(tmp, "catalog.csv"), index=False)
    result.table.to_parquet(os.path.join(tmp, "catalog.parquet"), index=False)
    with open(os.path.join(tmp, "summary.json"), "w") as f:
      json.dump(summary, f, indent=2)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)


def _pictures(result, reader, folder, summary, options):
  rx, ry = result.ratio_xy
  t = result.table
  comp = t[[c for c in t.columns if c.startswith("composition_") and c.count("_") == 1]]
  pictures.save_overlay(os.path.join(folder, "overlay.png"), result.image, t["x"] / rx,
                        t["y"] / ry, t["r"] / np.sqrt(rx * ry), comp.to_numpy(), t["p"],
                        title=f"{len(t)} droplets (p > {options.threshold})")
  unit = 1.0 if options.pixel_size is None else options.pixel_size
  pictures.save_size_distribution(
      os.path.join(folder, "size_distribution.png"), _histograms(result, options),
      report.EDGES_PX * unit, unit_label="µm" if options.pixel_size else "px",
      title=_distribution_title(summary))
  recon = reader.reconstruction(result, options.threshold)
  rmse = float(np.sqrt(np.mean((recon - result.image) ** 2)))
  summary["reconstruction_rmse"] = rmse
  pictures.save_image(os.path.join(folder, "reconstruction.png"), recon,
                      title="decoder render of the posterior point estimate")
  pictures.save_residual(os.path.join(folder, "residual.png"), result.image, recon,
                         title=f"image - reconstruction (RMSE {rmse:.4f})")


def _distribution_title(summary: dict) -> str:
  c = summary["count"]
  return (f"{c['median']:.0f} droplets (90% CI {c['ci90'][0]:.0f}–{c['ci90'][1]:.0f}), "
          f"{c['thresholded']} with p > {summary['threshold']}")


def _histograms(result: Result, options: InferConfig):
  """Posterior samples of the droplet counts per fixed diameter bin (for pooling)."""
  on, radius = result.draws
  unit = 1.0 if options.pixel_size is None else options.pixel_size
  return stats.diameter_histograms(on, radius, report.EDGES_PX * unit, unit)


def output_name(path: str, taken: set[str]) -> str:
  """A folder name for an image's outputs: its file name, made unique."""
  name = os.path.basename(path) or "image"
  base, k = name, 1
  while name in taken:
    k += 1
    name = f"{base}-{k}"
  taken.add(name)
  return name


def _infer_chunk(reader: DropletReader, images: list[np.ndarray], options: InferConfig):
  """Results of one batch; if the batch fails, each image alone (so one bad image only
  costs itself), with the exception in place of a result where it still fails."""
  try:
    return reader.infer_many(images, options)
  except Exception as err:  # noqa: BLE001 - isolated per image below.
    if len(images) > 1:
      tqdm.write(f"dropamort: a batch of {len(images)} images failed ({type(err).__name__}: "
                 f"{err}); reading them one at a time", file=sys.stderr)
    return [_caught(reader.infer, im, options) for im in images]


def _caught(fn, *args):
  try:
    return fn(*args)
  except Exception as err:  # noqa: BLE001 - reported by the caller, per image.
    return err


def run(reader: DropletReader, spec: str | list[str], out_root: str,
        options: InferConfig) -> int:
  """Infers every image of ``spec`` (a file, folder or glob, or a list of paths, read in
  that order), ``options.batch`` at a time; returns the number of failed images. Prints
  the throughput at the end and writes it to ``run.json``."""
  options = reader.resolve(options)
  paths = find_images(spec) if isinstance(spec, str) else list(spec)
  channels = reader.cfg.model.channels
  taken, tables, failed = set(), [], 0
  rows, folders, pooled = [], {}, None
  t_start, t_pass = time.perf_counter(), 0.0
  bar = tqdm(total=len(paths), disable=not options.progress or len(paths) < 2, unit="image",
             dynamic_ncols=True)
  for start in range(0, len(paths), options.batch):
    loaded = []
    for path in paths[start:start + options.batch]:
      name = output_name(path, taken)  # Taken even if the image fails: names stay stable.
      try:
        loaded.append((path, name, *read_image(path, channels)))
      except Exception as err:  # Unreadable in any way: report it, go on with the others.
        failed += 1
        bar.update(1)
        message = str(err) if isinstance(err, ImageError) else (
            f"{path}: failed ({type(err).__name__}: {err})")
        tqdm.write(f"dropamort: error: {message}", file=sys.stderr)
    results = _infer_chunk(reader, [image for _, _, image, _ in loaded], options)
    for (path, name, _, notes), result in zip(loaded, results):
      bar.update(1)
      try:
        if isinstance(result, Exception):
          raise result
        if options.refine_steps:
          from dropamort.inference.refine import refine_result

          result = refine_result(reader, result, options)
        write_outputs(result, reader, os.path.join(out_root, name), options, notes, path)
        t_pass += result.summary["timings_s"]["single_pass"]
      except Exception as err:  # Unexpected: report it and go on with the other images.
        failed += 1
        tqdm.write(f"dropamort: error: {path}: failed ({type(err).__name__}: {err})",
                   file=sys.stderr)
        continue
      tables.append(result.table.assign(image=name))
      rows.append(report.summary_row(name, result.summary))
      folders[name] = name
      hist = _histograms(result, options)
      pooled = hist if pooled is None else pooled + hist
      count = result.summary["count"]
      tqdm.write(f"{path}: {len(result.table)} droplets with p > {options.threshold}; "
                 f"posterior count {count['median']:.0f} (90% CI {count['ci90'][0]:.0f}–"
                 f"{count['ci90'][1]:.0f}) -> {os.path.join(out_root, name)}")
  bar.close()
  if len(paths) > 1 and tables:
    combined = pd.concat(tables, ignore_index=True)
    combined.to_csv(os.path.join(out_root, "catalog_all.csv"), index=False)
    combined.to_parquet(os.path.join(out_root, "catalog_all.parquet"), index=False)
    report.write_folder_report(out_root, rows, folders, pooled, pixel_size=options.pixel_size)
  if tables:  # Nothing at all is written when every image failed.
    _throughput(out_root, len(tables), failed, time.perf_counter() - t_start, t_pass,
                reader.predictor.devices)
  if failed:
    print(f"dropamort: {failed} of {len(paths)} images failed", file=sys.stderr)
  return failed


def _throughput(out_root, done, failed, elapsed, t_pass, devices) -> None:
  stats = {"images": done, "failed": failed, "seconds": round(elapsed, 3),
           "images_per_s": round(done / elapsed, 3),
           "single_pass_ms_per_image": round(1e3 * t_pass / done, 2),
           "devices": devices}
  with open(os.path.join(out_root, "run.json"), "w") as f:
    json.dump(stats, f, indent=2)
  print(f"{done} image{'s' * (done > 1)} in {elapsed:.1f} s ({stats['images_per_s']:.2f} "
        f"images/s with outputs; single pass {stats['single_pass_ms_per_image']:.1f} "
        f"ms/image on {devices} device{'s' * (devices > 1)})")
