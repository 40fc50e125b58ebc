"""Per-image measurements of a result against the truth, pooled into the report.

One ``Accumulator`` collects, image by image, the droplet tables (at the 50% and 90%
interval levels), the candidates' probabilities with their outcomes, and the SBC
statistics of the truth and of posterior draws; ``report`` turns them into numbers.
Inference results are read as flat candidate tables (every pyramid level's droplets with
p >= a floor, overlaps between levels resolved), so single-level and pyramid inference are
measured the same way.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from dropamort.read_config import EvaluateConfig
from dropamort.evaluation import calibration, detection
from dropamort.metrics import PRED_FACTOR, coverage, match
from dropamort.pyramid import point_mask

SBC_STATS = ("count", "mean_radius", "total_area")


def table_stats(count, radius_sum, radius2_sum) -> dict:
  """Permutation-invariant statistics from per-catalog sums (any shape)."""
  count = np.asarray(count, float)
  with np.errstate(invalid="ignore", divide="ignore"):
    mean_r = np.where(count > 0, np.asarray(radius_sum) / count, np.nan)
  return {"count": count, "mean_radius": mean_r, "total_area": np.pi * np.asarray(radius2_sum)}


def candidate_draws(key, cands: dict, draws: int) -> dict:
  """SBC statistics of ``draws`` catalogs drawn from the candidates: each is a droplet
  with probability p and a log-normal radius."""
  k_on, k_r = jax.random.split(key)
  p = np.asarray(cands["p"], float)
  on = np.asarray(jax.random.uniform(k_on, (draws, p.size))) < p
  r = np.exp(np.asarray(cands["r_log_loc"]) + np.asarray(cands["r_log_scale"])
             * np.asarray(jax.random.normal(k_r, (draws, p.size))))
  return table_stats(on.sum(1), (on * r).sum(1), (on * r**2).sum(1))


def inside_image(table: dict, height: int, width: int) -> dict:
  """The rows of a droplet table whose centres lie in the image (not in cell padding)."""
  keep = (np.asarray(table["x"]) < width) & (np.asarray(table["y"]) < height)
  return {k: np.asarray(v)[keep] for k, v in table.items()}


def confident(table: dict, threshold: float) -> dict:
  """The point catalog's rows (``pyramid.point_mask``)."""
  keep = point_mask(table, threshold)
  return {k: np.asarray(v)[keep] for k, v in table.items()}


@dataclasses.dataclass
class Accumulator:
  cfg: EvaluateConfig
  cell: int
  min_tol: float = 1.0  # Matching tolerance floor (px of the evaluated images).
  label_r_min: float | None = None  # Labels below are ignored (px of the evaluated images).
  true: list = dataclasses.field(default_factory=list)
  pred90: list = dataclasses.field(default_factory=list)
  pred50: list = dataclasses.field(default_factory=list)
  p: list = dataclasses.field(default_factory=list)
  hit: list = dataclasses.field(default_factory=list)
  sbc_true: dict = dataclasses.field(default_factory=lambda: {k: [] for k in SBC_STATS})
  sbc_draws: dict = dataclasses.field(default_factory=lambda: {k: [] for k in SBC_STATS})

  def _marked(self, table: dict, height: int, width: int) -> dict:
    """The table with an ``interior`` column: centre outside this image's border band."""
    band = self.cfg.border_cells * self.cell
    return {**table, "interior": detection.interior(height, width, band)(table)}

  def add(self, key, cands90: dict, cands50: dict, truth: dict, height: int, width: int, *,
          sbc: bool) -> None:
    """One image: its candidates (at the 90% and 50% interval levels, same rows) and its
    true droplets (x, y, r and, when known, composition), all in image pixels."""
    cands90, cands50 = (inside_image(c, height, width) for c in (cands90, cands50))
    truth = inside_image(truth, height, width)
    if self.label_r_min is not None:  # Incomplete small labels: score larger ones only.
      truth = {k: v[np.asarray(truth["r"]) >= self.label_r_min] for k, v in truth.items()}
      cands90, cands50 = (
          {k: v[np.asarray(c["r"]) >= PRED_FACTOR * self.label_r_min] for k, v in c.items()}
          for c in (cands90, cands50))
    truth = self._marked(truth, height, width)
    self.true.append(truth)
    self.pred90.append(self._marked(confident(cands90, self.cfg.threshold), height, width))
    self.pred50.append(confident(cands50, self.cfg.threshold))
    # Reliability of p: a candidate is right when it matches a true droplet.
    _, j = match(truth, cands90, min_tol=self.min_tol)
    hit = np.zeros(len(cands90["x"]), bool)
    hit[j] = True
    self.p.append(np.asarray(cands90["p"]))
    self.hit.append(hit)
    if sbc:
      r = np.asarray(truth["r"], float)
      t = table_stats(len(r), r.sum(), (r**2).sum())
      d = candidate_draws(key, cands90, self.cfg.sbc_draws)
      for k in SBC_STATS:
        self.sbc_true[k].append(float(t[k]))
        self.sbc_draws[k].append(d[k])

  def report(self) -> dict:
    cfg = self.cfg
    everything = lambda t: np.ones(len(t["x"]), bool)
    # One matching per image serves every subset and both interval levels (the 50% and
    # 90% tables list the same droplets at the same medians).
    pairs = [match(t, p, min_tol=self.min_tol) for t, p in zip(self.true, self.pred90)]
    top = max([float(np.max(t["r"])) for t in self.true if len(t["r"])] or [1.0])
    octaves = [2.0**k for k in range(0, int(np.ceil(np.log2(max(top, 2.0)))) + 1)]
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
        "by_octave": detection.by_radius(self.true, self.pred90, octaves, pairs),
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
