"""The Python API: ``dropamort.load(checkpoint).infer(image)`` with no file system output."""

from __future__ import annotations

import dataclasses
import math
import sys
import time

import jax
import numpy as np
import pandas as pd

from dropamort import checkpoint
from dropamort.read_config import InferConfig
from dropamort.data.images import resize
from dropamort.encoder.posterior import CatalogPosterior
from dropamort.inference.catalog_table import at_edge, droplet_table, summarize
from dropamort.inference.predictor import Predictor, TilePlan
from dropamort.inference.stats import catalogs, draw, lab_summary
from dropamort.model.prior import IDENTITY_EDGE, edge_factor
from dropamort.pyramid import LevelResult, merged_candidates, point_mask, read, render_levels


@dataclasses.dataclass
class Result:
  """One image's inference: the posterior at every level and what people read from it."""

  levels: list[LevelResult]
  candidates: dict  # Kept candidates of all levels (p >= MIN_P), base-image pixels.
  table: pd.DataFrame  # One row per droplet with p > threshold, original pixel frame.
  summary: dict
  image: np.ndarray  # The analysed base image (after scaling).
  ratio_xy: tuple[float, float]  # Original / analysed size.
  draws: tuple  # (on_SN, radius_SN): the posterior samples the summary was computed from.
  cell: int  # Catalog cell side (px of each level's image).
  edge: tuple  # The edge map the table's radii went through (``DropletReader.edge``).

  @property
  def posterior(self) -> CatalogPosterior:
    """The base level's posterior (the whole catalog when the pyramid has one level)."""
    return self.levels[0].posterior

  def sample(self, key, n: int) -> dict:
    """n posterior samples of the whole catalog in the table's frame (``stats.catalogs``):
    {"on": (n, N) bool, "x", "y", "r": (n, N) original px, "p": (N,)}, one column per
    candidate of every level (``candidates``, p >= 0.01); the table's rows are the
    columns ``pyramid.point_mask(candidates, threshold)``. Radii at the droplets' edges
    and scales widened as calibrated, so each row's 5% and 95% sample quantiles are its
    interval in the table. Drawn from the encoder's posterior, as the summary is: after
    ``infer.refine_steps`` the table's intervals are the refined ones and differ."""
    return catalogs(key, self.candidates, n, cell=self.cell, ratio_xy=self.ratio_xy,
                    edge=self.edge)


class DropletReader:
  """A trained model that reads droplet images. ``infer`` touches no files."""

  def __init__(self, predictor: Predictor):
    self.predictor = predictor
    self.cfg = predictor.cfg

  def infer(self, image_HWC: np.ndarray, options: InferConfig = InferConfig()) -> Result:
    """Catalog posterior, droplet table and summary for one image in [0, 1], (H, W, C)."""
    return self.infer_many([image_HWC], options)[0]

  def infer_many(self, images: list[np.ndarray],
                 options: InferConfig = InferConfig()) -> list[Result]:
    """``infer`` for several images at once: the levels of images of one shape share
    encoder calls of at most ``options.batch`` images, split over all local devices."""
    t0 = time.perf_counter()
    options = self.resolve(options)
    scale = self.base_scale(options)
    bases = []
    for image in images:
      image = np.asarray(image, np.float32)
      if image.ndim != 3 or image.shape[-1] != self.cfg.model.channels:
        raise ValueError(f"image must be (H, W, {self.cfg.model.channels}), got {image.shape}")
      bases.append(resize(image, scale))
    sizes = [np.shape(im)[:2] for im in images]
    per_image = read(lambda ims: self.predictor.posteriors(ims, batch=options.batch), bases,
                     self.cfg.model, options.levels)
    jax.block_until_ready([r.posterior for rs in per_image for r in rs])
    t_pass = (time.perf_counter() - t0) / max(len(images), 1)  # Per image, batch shared.
    return [self._result(levels, size, t_pass, options)
            for levels, size in zip(per_image, sizes)]

  def resolve(self, options: InferConfig) -> InferConfig:
    """``options`` with ``infer.pixel_size``, when not given, the one the model was
    trained with (the user tier's ``pixel_size``; None: sizes stay in pixels)."""
    if options.pixel_size is None and self.cfg.pixel_size is not None:
      return dataclasses.replace(options, pixel_size=self.cfg.pixel_size)
    return options

  def base_scale(self, options: InferConfig) -> float:
    """``infer.scale``, or when it is not given the scale the model was calibrated at
    (its microscope's), or 1 for a model trained on simulations only."""
    if options.scale is not None:
      return options.scale
    return self.cfg.data.scale if self.cfg.data.real is not None else 1.0

  def edge(self, options: InferConfig):
    """The edge map the reported radii go through (``at_edge``): the calibration's
    (``Prior.edge``), or with ``infer.edge_map=false`` the identity."""
    return self.predictor.prior.edge if options.edge_map else IDENTITY_EDGE

  def table(self, candidates: dict, ratio_xy, options: InferConfig) -> pd.DataFrame:
    """The user-facing table of ``candidates`` (analysed image px; ``ratio_xy`` = original
    / analysed size): radii through the edge map (``edge``), lengths in original px."""
    rr = float(np.sqrt(ratio_xy[0] * ratio_xy[1]))
    return droplet_table(at_edge(candidates, self.edge(options), rr),
                         threshold=options.threshold, ratio_xy=ratio_xy,
                         pixel_size=options.pixel_size)

  def reconstruction(self, result: Result, threshold: float) -> np.ndarray:
    """Noise-free render of the droplets the result lists (p > threshold), at the base
    image's size, every level's droplets at their size."""
    return render_levels(self.cfg.model, self.predictor.decoder_params, result.levels,
                         result.candidates, threshold)

  def _result(self, levels: list[LevelResult], size, t_pass, options) -> Result:
    base = levels[0].image
    (h0, w0), (h, w) = size, base.shape[:2]
    ratio = (w0 / w, h0 / h)
    candidates = merged_candidates(levels, self.cfg.model, options.threshold,
                                   widen=self.predictor.prior.widen)
    rr = float(np.sqrt(ratio[0] * ratio[1]))
    table, edge = self.table(candidates, ratio, options), self.edge(options)
    on, radius = draw(jax.random.key(options.seed), candidates, options.samples, rr)
    draws = on, radius * edge_factor(radius, edge)  # Original px: the map's own.
    summary = summarize(candidates, *draws)
    summary["lab"] = lab_summary(*draws, area_px=float(h0 * w0),
                                 pixel_size=options.pixel_size)
    summary["pixel_size_um"] = options.pixel_size
    summary["count"]["thresholded"] = len(table)  # = rows of catalog.csv
    summary.update({"image_size": [h0, w0], "analysed_size": [h, w],
                    "scale": self.base_scale(options), "scale_chosen": options.scale is None,
                    "threshold": options.threshold,
                    "scales": scales_summary(levels, candidates, options.threshold, rr, edge),
                    "edge_map": dict(zip(("a", "b_px", "r0_px"),
                                         np.asarray(edge, float).round(4).tolist())),
                    "timings_s": {"single_pass": round(t_pass, 4)}})
    return Result(levels=levels, candidates=candidates, table=table, summary=summary,
                  image=base, ratio_xy=ratio, draws=draws, cell=self.cfg.model.cell,
                  edge=tuple(np.asarray(edge, float)))


def scales_summary(levels: list[LevelResult], candidates: dict, threshold: float,
                   ratio: float, edge=IDENTITY_EDGE) -> list[dict]:
  """Per level: its scale (its size / the original image's size), the band of radii it
  read (original pixels; through the ``edge`` map, as the table's radii are) and how many
  droplets (p > threshold) it contributed; ``ratio`` is original size / base level size;
  the coarsest level's band is open above (None)."""
  to_edge = lambda v: float(v * edge_factor(v, edge)) if v > 0 else 0.0  # Increasing map.
  out = []
  for lr in levels:
    lo, hi = lr.level.keep
    f = lr.level.factor
    n = int(np.sum((candidates["level"] == lr.level.index) & point_mask(candidates, threshold)))
    top = None if math.isinf(hi) else to_edge(hi * f * ratio)  # JSON has no infinity.
    out.append({"scale": 1 / (f * ratio), "radius_px": [to_edge(lo * f * ratio), top],
                "droplets": n})
  return out


def load(path: str | None = None, *, tile: int = 512, overlap: int = 8) -> DropletReader:
  """A ``DropletReader`` from a checkpoint (default: the latest training run's calibrated
  or best checkpoint; with none, the bundled model, saying so in one line)."""
  if path is None:
    try:
      path = checkpoint.latest_run()
    except checkpoint.CheckpointError:
      path = "example"
      print("dropamort: no trained model found; using the bundled model calibrated on the "
            "example image (checkpoint=example); a model calibrated on your own images "
            "reads them better: python train.py data.real=YOUR_FOLDER", file=sys.stderr)
  saved = checkpoint.load(path)
  return DropletReader(Predictor(saved.cfg, saved.params, saved.decoder_params,
                                 TilePlan(tile, overlap), prior=saved.prior))
