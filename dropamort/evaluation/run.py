"""The evaluate job: a checkpoint on a fixed dataset -> report.json and plots."""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time

import jax
import numpy as np
from tqdm import tqdm

from dropamort.config import ModelConfig, json_ready
from dropamort.datasets import store
from dropamort.datasets import DatasetError
from dropamort.evaluation.measure import Accumulator
from dropamort.evaluation.plots import save_reliability, save_sbc
from dropamort.read_config import EvaluateRunConfig, InferConfig
from dropamort.inference.api import DropletReader
from dropamort.pyramid import merged_candidates
from dropamort.inference.predictor import Predictor
from dropamort.inference.catalog_table import at_edge
from dropamort.model.catalog import to_table
from dropamort.model.prior import Prior
from dropamort import checkpoint as checkpoints

# Fields of the model that define the prior and the likelihood: if the dataset was
# simulated with other values than the checkpoint was trained on, SBC tests that mismatch.
PRIOR_FIELDS = ("density", "radius_loc", "radius_scale", "radius_min", "radius_max",
                "background_low", "background_high", "noise_sigma", "hard_core", "min_gap",
                "decoder_params", "cell")


def open_dataset(cfg: EvaluateRunConfig, channels: int, scale: float):
  """(builder, kind) for ``cfg.dataset``, real images resized by ``scale``; kind is
  "droplet_sim" or "droplet_images"."""
  spec = cfg.dataset
  if spec.startswith("droplet_sim/"):
    return store.open_sim(spec.split("/", 1)[1], cfg.data_dir), "droplet_sim"
  if spec == "droplet_images":
    if cfg.images is None:
      raise DatasetError("dataset=droplet_images needs images=FOLDER (and optionally "
                         "annotations=CSV)")
    return store.open_images(cfg.images, cfg.data_dir, annotations=cfg.annotations,
                             scale=scale, channels=channels), "droplet_images"
  builder = store.open_directory(spec)
  return builder, builder.info.name


def check_compatible(model: ModelConfig, prior: Prior, builder, kind: str) -> list[str]:
  """Raises DatasetError if the checkpoint cannot read the set; returns prior fields
  that differ between the set's simulation model and the checkpoint's (its structure and
  its fitted prior)."""
  if kind == "droplet_images":
    c = builder.info.features["image"].shape[-1]
    if c != model.channels:
      raise DatasetError(f"{builder.data_dir}: images have {c} channels, the checkpoint "
                         f"reads {model.channels}")
    return []
  data_model = builder.info.metadata["model"]
  for name in ("channels", "types"):
    if data_model[name] != getattr(model, name):
      raise DatasetError(f"{builder.data_dir}: dataset has {name}={data_model[name]}, the "
                         f"checkpoint was trained with {name}={getattr(model, name)}")
  mine = json_ready(vars(model))
  mine.update(prior.summary())
  return [f for f in PRIOR_FIELDS if not _same(data_model.get(f), mine.get(f))]


def _same(a, b) -> bool:
  """Equal config values: numbers (or per-channel lists) to 1e-5, anything else exactly."""
  try:
    return bool(np.allclose(np.asarray(a, float), np.asarray(b, float), rtol=1e-5))
  except (TypeError, ValueError):
    return a == b


def _candidates(reader: DropletReader, image, options: InferConfig):
  """(candidates at the 90% level, the same at the 50% level, single-pass ms)."""
  t0 = time.perf_counter()
  result = reader.infer(image, options)
  ms = (time.perf_counter() - t0) * 1e3
  half = merged_candidates(result.levels, reader.cfg.model, options.threshold, level=0.5,
                           widen=reader.predictor.prior.widen)
  return result.candidates, half, ms


def _truth_tables(builder, limit):
  """Images and true tables (band droplets and the larger layers' ones) of a sim set."""
  images, catalog = store.read_sim(builder, limit)
  cell = builder.info.metadata["model"]["cell"]
  larger = store.read_larger(builder, limit)
  tables = []
  for band, big in zip(to_table(catalog, cell), larger):
    n = len(big["x"])
    tables.append({"x": np.concatenate([band["x"], big["x"]]),
                   "y": np.concatenate([band["y"], big["y"]]),
                   "r": np.concatenate([band["r"], big["r"]]),
                   "composition": np.concatenate(
                       [band["composition"], np.full((n,) + band["composition"].shape[1:],
                                                     np.nan)]) if n else band["composition"]})
  return images, tables


def evaluate(cfg: EvaluateRunConfig, out_dir: str, *, progress: bool = True) -> dict:
  """Runs the evaluation and writes report.json, reliability.png (and sbc.png for
  simulated sets) into ``out_dir``; files appear only once complete."""
  checkpoint = cfg.checkpoint if cfg.checkpoint is not None else checkpoints.latest_run()
  saved = checkpoints.load(checkpoint)
  model, ecfg = saved.cfg.model, cfg.evaluate
  reader = DropletReader(Predictor(saved.cfg, saved.params, saved.decoder_params,
                                   prior=saved.prior))
  # Real images are read as infer.py reads them: at the calibration's scale unless given.
  scale = reader.base_scale(InferConfig(scale=cfg.scale))
  builder, kind = open_dataset(cfg, model.channels, scale)
  mismatch = check_compatible(model, saved.prior, builder, kind)
  # The stored images are already at the analysed scale.
  options = InferConfig(scale=1.0, threshold=ecfg.threshold, levels=ecfg.levels, samples=10,
                        progress=False)
  scale = scale if kind == "droplet_images" else 1.0  # Simulated sets: their own px.
  acc = Accumulator(ecfg, model.cell, min_tol=ecfg.match_min_tol * scale,
                    label_r_min=None if ecfg.label_r_min is None else ecfg.label_r_min * scale)
  key = jax.random.key(ecfg.seed)
  times = []
  if kind == "droplet_sim":
    images, truths = _truth_tables(builder, cfg.limit)
    examples = [{"image": im, **t} for im, t in zip(images, truths)]
  else:
    examples = [e for e in store.read_images(builder) if e["annotated"]][:cfg.limit]
    if not examples:
      raise DatasetError(f"{cfg.images}: no annotated images to evaluate against (give "
                         f"annotations=CSV with image, x, y, r)")
  for i, ex in enumerate(tqdm(examples, disable=not progress, unit="image")):
    c90, c50, ms = _candidates(reader, ex["image"], options)
    if kind != "droplet_sim":  # Labels mark droplets' edges: radii at the edge map's.
      c90, c50 = (at_edge(c, saved.prior.edge, 1 / scale) for c in (c90, c50))
    times.append(ms)
    h, w = ex["image"].shape[:2]
    truth = {k: np.asarray(ex[k], float) for k in ("x", "y", "r", "composition") if k in ex}
    acc.add(jax.random.fold_in(key, i), c90, c50, truth, h, w, sbc=kind == "droplet_sim")
  shapes = {tuple(ex["image"].shape[:2]) for ex in examples}
  size = [int(v) for v in shapes.pop()] if len(shapes) == 1 else None
  report = acc.report()
  report.update({
      "checkpoint": os.path.abspath(checkpoint),
      "dataset": {"kind": kind, "spec": cfg.dataset, "path": str(builder.data_dir),
                  "version": str(builder.info.version), "image_size": size},
      "prior_mismatch": mismatch,
      "timing_ms": {"inference_median": statistics.median(times[1:] or times),
                    "first_image_with_compile": times[0]},
      "config": json_ready(vars(ecfg))})
  report["goals"] = goals(report, ecfg.r_min)
  _write(out_dir, report)
  return report


def goals(report: dict, r_min: float) -> dict:
  """The issue's targets, each with the measured value and whether it is met."""
  sub = report[f"detection_r_ge_{r_min:g}"]
  cov = report["coverage"].get("90", {})
  out = {f"f1_r_ge_{r_min:g} >= 0.95": sub["f1"],
         "position_rmse <= 0.3 px": sub.get("position_rmse"),
         "radius_rel_error <= 0.07": sub.get("radius_rel_error")}
  checks = {f"f1_r_ge_{r_min:g} >= 0.95": lambda v: v >= 0.95,
            "position_rmse <= 0.3 px": lambda v: v <= 0.3,
            "radius_rel_error <= 0.07": lambda v: v <= 0.07}
  for k, v in cov.items():
    name = f"{k} 90% coverage in [0.85, 0.95]"
    out[name], checks[name] = v, lambda v: 0.85 <= v <= 0.95
  for stat in ("count", "mean_radius"):
    if "sbc" in report:
      name = f"sbc {stat} uniform (p >= 0.05)"
      out[name], checks[name] = report["sbc"][stat]["pvalue"], lambda v: v >= 0.05
  return {k: {"value": v, "met": None if v is None or not np.isfinite(v) else bool(checks[k](v))}
          for k, v in out.items()}


def _write(out_dir: str, report: dict) -> None:
  """Plots and report go to a temporary folder first, then move in one by one, the report
  last: a report.json on disk means the evaluation finished."""
  os.makedirs(out_dir, exist_ok=True)
  with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
    names = ["reliability.png"]
    save_reliability(os.path.join(tmp, "reliability.png"), report["reliability"])
    if "sbc" in report:
      save_sbc(os.path.join(tmp, "sbc.png"), report["sbc"], report["config"]["sbc_draws"])
      names.append("sbc.png")
    with open(os.path.join(tmp, "report.json"), "w") as f:
      json.dump(_clean(report), f, indent=1, allow_nan=False)
    for name in names + ["report.json"]:
      os.replace(os.path.join(tmp, name), os.path.join(out_dir, name))


def _clean(x):
  """JSON-ready: numpy scalars to Python, NaN and infinities to null."""
  if isinstance(x, dict):
    return {k: _clean(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [_clean(v) for v in x]
  if isinstance(x, (np.integer, np.bool_)):
    return x.item()
  if isinstance(x, (float, np.floating)):
    return float(x) if np.isfinite(x) else None
  return x


def summary_lines(report: dict) -> str:
  """What ``evaluate.py`` prints."""
  lines = [f"{report['images']} images, {report['true_droplets']} true droplets, "
           f"{report['detected_droplets']} detected; inference (all pyramid levels, tables) "
           f"{report['timing_ms']['inference_median']:.1f} ms/image"]
  for name, g in report["goals"].items():
    mark = {True: "met", False: "MISSED", None: "n/a"}[g["met"]]
    v = g["value"]
    lines.append(f"  {name:42s} {'-' if v is None else f'{v:.4g}':>8}  {mark}")
  if report["prior_mismatch"]:
    lines.append(f"note: the dataset's prior differs from the checkpoint's in "
                 f"{report['prior_mismatch']}; SBC then tests that mismatch too")
  return "\n".join(lines)

