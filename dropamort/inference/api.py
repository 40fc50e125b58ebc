"""The Python API: ``dropamort.load(checkpoint).infer(image)`` with no file system output."""

from __future__ import annotations

import dataclasses
import time

import jax
import numpy as np
import pandas as pd

from dropamort import checkpoint
from dropamort.config import InferConfig
from dropamort.data.images import resize
from dropamort.encoder.posterior import CatalogPosterior
from dropamort.inference.catalog_table import droplet_table, summarize
from dropamort.inference.predictor import Predictor, TilePlan


@dataclasses.dataclass
class Result:
  """One image's inference: the posterior and what people read from it."""

  posterior: CatalogPosterior  # On the analysed (scaled, cell-padded) grid.
  table: pd.DataFrame  # One row per droplet, original pixel frame.
  summary: dict
  image: np.ndarray  # The analysed image (after scaling).
  ratio_xy: tuple[float, float]  # Original / analysed size.

  def sample(self, key, n: int):
    """n posterior catalog samples on the analysed grid (see ``CatalogPosterior.sample``)."""
    return self.posterior.sample(key, n)


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
    """``infer`` for several images at once: images of one shape share encoder calls of
    at most ``options.batch`` images, split over all local devices."""
    t0 = time.perf_counter()
    scaled, sizes = [], []
    for image in images:
      image = np.asarray(image, np.float32)
      if image.ndim != 3 or image.shape[-1] != self.cfg.model.channels:
        raise ValueError(f"image must be (H, W, {self.cfg.model.channels}), got {image.shape}")
      sizes.append(image.shape[:2])
      scaled.append(resize(image, options.scale))
    posteriors = self.predictor.posteriors(scaled, batch=options.batch)
    jax.block_until_ready(posteriors)
    t_pass = (time.perf_counter() - t0) / max(len(images), 1)  # Per image, batch shared.
    return [self._result(p, im, size, t_pass, options)
            for p, im, size in zip(posteriors, scaled, sizes)]

  def _result(self, posterior, image, size, t_pass, options) -> Result:
    (h0, w0), (h, w) = size, image.shape[:2]
    ratio = (w0 / w, h0 / h)
    cell = self.cfg.model.cell
    table = droplet_table(posterior, cell=cell, threshold=options.threshold, ratio_xy=ratio,
                          height=h, width=w)
    summary = summarize(jax.random.key(options.seed), posterior, cell=cell, height=h, width=w,
                        ratio=float(np.sqrt(ratio[0] * ratio[1])), samples=options.samples)
    summary["count"]["thresholded"] = len(table)  # = rows of catalog.csv
    summary.update({"image_size": [h0, w0], "analysed_size": [h, w], "scale": options.scale,
                    "threshold": options.threshold,
                    "timings_s": {"single_pass": round(t_pass, 4)}})
    return Result(posterior=posterior, table=table, summary=summary, image=image,
                  ratio_xy=ratio)


def load(path: str | None = None, *, tile: int = 512, overlap: int = 8) -> DropletReader:
  """A ``DropletReader`` from a checkpoint (default: the latest training run's calibrated
  or best checkpoint)."""
  saved = checkpoint.load(path if path is not None else checkpoint.latest_run())
  return DropletReader(Predictor(saved.cfg, saved.params, saved.decoder_params,
                                 TilePlan(tile, overlap), prior=saved.prior))
