"""Per-image measurements of a posterior against the truth, pooled into the report.

One ``Accumulator`` collects, image by image, the droplet tables (at the 50% and 90%
interval levels), the cell probabilities with their outcomes, and the SBC statistics of
the truth and of posterior draws; ``report`` turns them into numbers.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from dropamort.config import EvaluateConfig
from dropamort.encoder.posterior import CatalogPosterior
from dropamort.evaluation import calibration, detection
from dropamort.metrics import coverage, match
from dropamort.model.catalog import Catalog

SBC_STATS = ("count", "mean_radius", "total_area")
REAL_P_FLOOR = 0.02  # Real images: detections above this p enter the reliability diagram.


def catalog_stats(on, radius, centres, height: int, width: int) -> dict:
  """Permutation-invariant statistics of catalogs (any leading axes; grid last two)."""
  inside = (centres[..., 0] < width) & (centres[..., 1] < height)
  on = np.asarray(on, bool) & inside
  count = on.sum((-2, -1))
  r = np.where(on, radius, 0.0)
  with np.errstate(invalid="ignore", divide="ignore"):
    mean_r = np.where(count > 0, r.sum((-2, -1)) / count, np.nan)
  return {"count": count.astype(float), "mean_radius": mean_r,
          "total_area": np.pi * (r**2).sum((-2, -1))}


def crop_posterior(post: CatalogPosterior, gy: int, gx: int) -> CatalogPosterior:
  """The posterior on the first gy × gx cells (drops the padding a tiled pass adds)."""
  return jax.tree.map(lambda a: a[:, :gy, :gx] if a.ndim >= 3 else a, post)


def inside_image(table: dict, height: int, width: int) -> dict:
  """The rows of a droplet table whose centres lie in the image (not in cell padding)."""
  keep = (table["x"] < width) & (table["y"] < height)
  return {k: np.asarray(v)[keep] for k, v in table.items()}


@dataclasses.dataclass
class Accumulator:
  cfg: EvaluateConfig
  cell: int
  true: list = dataclasses.field(default_factory=list)
  pred90: list = dataclasses.field(default_factory=list)
  pred50: list = dataclasses.field(default_factory=list)
  p: list = dataclasses.field(default_factory=list)
  hit: list = dataclasses.field(default_factory=list)
  sbc_true: dict = dataclasses.field(default_factory=lambda: {k: [] for k in SBC_STATS})
  sbc_draws: dict = dataclasses.field(default_factory=lambda: {k: [] for k in SBC_STATS})

  def tables(self, post: CatalogPosterior, height: int, width: int):
    t90 = post.to_table(self.cell, self.cfg.threshold, level=0.9)[0]
    t50 = post.to_table(self.cell, self.cfg.threshold, level=0.5)[0]
    t90, t50 = inside_image(t90, height, width), inside_image(t50, height, width)
    return self._marked(t90, height, width), t50

  def _marked(self, table: dict, height: int, width: int) -> dict:
    """The table with an ``interior`` column: centre outside this image's border band."""
    band = self.cfg.border_cells * self.cell
    return {**table, "interior": detection.interior(height, width, band)(table)}

  def add_simulated(self, key, post: CatalogPosterior, truth: Catalog, height: int,
                    width: int):
    """One simulated image: truth is its grid catalog (batch of one, same grid)."""
    t90, t50 = self.tables(post, height, width)
    true_centres = np.asarray(truth.centres_BYX2(self.cell))[0]
    on = np.asarray(truth.on_BYX[0], bool)
    self.true.append(self._marked({"x": true_centres[on][:, 0], "y": true_centres[on][:, 1],
                                   "r": np.asarray(truth.radius_BYX[0])[on],
                                   "composition": np.asarray(truth.composition_BYXT[0])[on]},
                                  height, width))
    self.pred90.append(t90)
    self.pred50.append(t50)
    # p is the probability that a cell holds a droplet: its outcome is the true cell.
    self.p.append(np.asarray(post.p_BYX[0]).ravel())
    self.hit.append(on.ravel())
    draws = post.sample(key, self.cfg.sbc_draws)
    d = catalog_stats(np.asarray(draws.on_BYX)[:, 0], np.asarray(draws.radius_BYX)[:, 0],
                      np.asarray(draws.centres_BYX2(self.cell))[:, 0], height, width)
    t = catalog_stats(on, np.asarray(truth.radius_BYX[0]), true_centres, height, width)
    for k in SBC_STATS:
      self.sbc_true[k].append(float(t[k]))
      self.sbc_draws[k].append(d[k])

  def add_annotated(self, post: CatalogPosterior, truth: dict, height: int, width: int):
    """One real image with annotated x, y, r (no grid truth, no SBC)."""
    t90, t50 = self.tables(post, height, width)
    self.true.append(self._marked({k: np.asarray(truth[k], float) for k in ("x", "y", "r")},
                                  height, width))
    self.pred90.append(t90)
    self.pred50.append(t50)
    low = inside_image(post.to_table(self.cell, REAL_P_FLOOR)[0], height, width)
    _, j = match(self.true[-1], low)
    hit = np.zeros(len(low["x"]), bool)
    hit[j] = True
    self.p.append(low["p"])
    self.hit.append(hit)

  def report(self) -> dict:
    cfg = self.cfg
    everything = lambda t: np.ones(len(t["x"]), bool)
    # One matching per image serves every subset and both interval levels (the 50% and
    # 90% tables list the same droplets at the same medians).
    pairs = [match(t, p) for t, p in zip(self.true, self.pred90)]
    out = {
        "images": len(self.true),
        "true_droplets": int(sum(len(t["x"]) for t in self.true)),
        "detected_droplets": int(sum(len(t["x"]) for t in self.pred90)),
        "detection": detection.subset_metrics(self.true, self.pred90, everything, everything,
                                              pairs),
        f"detection_r_ge_{cfg.r_min:g}": detection.subset_metrics(
            self.true, self.pred90, detection.min_radius(cfg.r_min),
            detection.min_radius(cfg.r_min), pairs),
        "detection_interior": detection.subset_metrics(
            self.true, self.pred90, lambda t: t["interior"], lambda t: t["interior"], pairs),
        "border_band_px": cfg.border_cells * self.cell,
        "by_radius": detection.by_radius(self.true, self.pred90,
                                         list(cfg.radius_edges) + [np.inf], pairs),
        "coverage": {}}
    for level, preds in ((0.5, self.pred50), (0.9, self.pred90)):
      out["coverage"][f"{100 * level:.0f}"] = coverage(self.true, preds, pairs, level)
    out["reliability"] = calibration.reliability(np.concatenate(self.p),
                                                 np.concatenate(self.hit),
                                                 cfg.reliability_bins)
    if any(self.sbc_true["count"]):
      rng = np.random.default_rng(cfg.seed)
      out["sbc"] = {}
      for k in SBC_STATS:
        truth, draws = np.array(self.sbc_true[k]), np.stack(self.sbc_draws[k])
        ranks = calibration.sbc_ranks(truth, draws, rng)
        out["sbc"][k] = {**calibration.uniformity(ranks, cfg.sbc_draws),
                         **calibration.error_summary(truth, draws), "ranks": ranks.tolist()}
    for r in out["by_radius"]:
      if not np.isfinite(r["r_max"]):
        r["r_max"] = None
    return out
