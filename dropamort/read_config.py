"""The configurations of the commands that read images with a trained model: ``infer.py``
(``InferConfig``, frame sequences included) and ``evaluate.py`` (``EvaluateConfig``).
Typed like the training configuration (``dropamort.config``), checked on construction."""

from __future__ import annotations

import dataclasses
import math

from dropamort.config import _check


@dataclasses.dataclass
class InferConfig:
  """How ``infer.py`` reads images."""

  # Resize factor of the base image (the pyramid's finest level). None: the scale the
  # model was calibrated at (data.scale of its calibration), else 1.
  scale: float | None = None
  levels: int | None = None  # Pyramid levels (each half the size); None: as many as fit.
  pixel_size: float | None = None  # µm per pixel of the input image: adds µm columns and
  # figures (x_um, y_um, r_um; density per mm², diameters in µm).
  threshold: float = 0.5  # p above which a droplet is listed in the catalog.
  edge_map: bool = True  # Radii at the droplets' edge, by the calibration's edge map
  # (Prior.edge; training.edge); false: the radii as the model reads them (its render's,
  # and the truth of images simulated from it). No change for an uncalibrated model.
  tile: int = 512  # Images larger than this (px, after scaling) are tiled.
  overlap: int = 8  # Context cells around each tile's own region.
  samples: int = 200  # Posterior samples for the summary's credible intervals.
  batch: int = 8  # Images per encoder call, split over all local devices.
  refine_steps: int = 0  # SVI steps after the single pass (0: none).
  refine_lr: float = 0.01
  seed: int = 0
  pictures: bool = True
  progress: bool = True
  # Frame sequences (dropamort.sequence): read the images as frames of one experiment, in
  # natural name order (frame_2 before frame_10), and link their droplets into tracks with
  # growth rates (tracks.csv, growth.csv, sequence.json, tracks.png, growth.png).
  sequence: bool = False
  frame_interval_s: float | None = None  # Seconds between frames (null: frame numbers).
  frame_times: str | None = None  # CSV with columns image, time_s: each frame's time.
  contact_angle_deg: float = 90.0  # Of the droplets on the surface (90: hemispheres).
  latent_heat_j_kg: float = 2.257e6  # Of the condensing liquid (water, 100 °C).
  density_kg_m3: float = 998.0  # Of the liquid (water, 20 °C).

  def __post_init__(self):
    _check(self.scale is None or (self.scale > 0 and math.isfinite(self.scale)),
           "infer.scale", "> 0 or null", self.scale)
    _check(self.frame_interval_s is None or (self.frame_interval_s > 0
                                             and math.isfinite(self.frame_interval_s)),
           "infer.frame_interval_s", "> 0 (seconds) or null", self.frame_interval_s)
    _check(0 < self.contact_angle_deg < 180, "infer.contact_angle_deg", "in (0, 180)",
           self.contact_angle_deg)
    _check(self.latent_heat_j_kg > 0, "infer.latent_heat_j_kg", "> 0", self.latent_heat_j_kg)
    _check(self.density_kg_m3 > 0, "infer.density_kg_m3", "> 0", self.density_kg_m3)
    _check(self.levels is None or self.levels >= 1, "infer.levels", ">= 1 or null",
           self.levels)
    _check(self.pixel_size is None or (self.pixel_size > 0 and math.isfinite(self.pixel_size)),
           "infer.pixel_size", "> 0 (µm per pixel) or null", self.pixel_size)
    _check(0 < self.threshold < 1, "infer.threshold", "in (0, 1)", self.threshold)
    _check(self.tile >= 16, "infer.tile", ">= 16", self.tile)
    _check(self.overlap >= 0, "infer.overlap", ">= 0", self.overlap)
    _check(self.samples >= 10, "infer.samples", ">= 10", self.samples)
    _check(self.batch >= 1, "infer.batch", ">= 1", self.batch)
    _check(self.refine_steps >= 0, "infer.refine_steps", ">= 0", self.refine_steps)
    _check(self.refine_lr > 0, "infer.refine_lr", "> 0", self.refine_lr)


@dataclasses.dataclass
class InferRunConfig:
  """The root configuration of ``infer.py``."""

  image: str = "???"  # A file, a folder or a glob (required).
  checkpoint: str | None = None  # Default: the latest run's calibrated (or best) checkpoint.
  infer: InferConfig = dataclasses.field(default_factory=InferConfig)


def register_infer_configs() -> None:
  from hydra.core.config_store import ConfigStore

  ConfigStore.instance().store(name="infer_schema", node=InferRunConfig)


@dataclasses.dataclass
class EvaluateConfig:
  """What ``evaluate.py`` measures."""

  threshold: float = 0.5  # p above which a cell counts as a detection.
  sbc_draws: int = 99  # Posterior draws per image for SBC ranks (ranks in 0..draws).
  radius_edges: tuple[float, ...] = (1.0, 1.5, 2.0, 3.0, 5.0)  # Bins; the last is open.
  r_min: float = 1.5  # The "droplets with r >= r_min" subset the goals are stated for.
  levels: int | None = None  # Pyramid levels, as infer.levels (None: as many as fit).
  # Labelled real images whose small droplets are not all labelled: ignore labels with r
  # below this (original px) and predictions below 0.7 of it. None: score everything.
  label_r_min: float | None = None
  match_min_tol: float = 1.0  # A match is within max(this (original px), 0.5 r_true).
  border_cells: int = 1  # Width of the border band left out of the interior metrics.
  reliability_bins: int = 10
  seed: int = 0

  def __post_init__(self):
    self.radius_edges = tuple(float(e) for e in self.radius_edges)
    _check(0 < self.threshold < 1, "evaluate.threshold", "in (0, 1)", self.threshold)
    _check(self.sbc_draws >= 9, "evaluate.sbc_draws", ">= 9", self.sbc_draws)
    _check(len(self.radius_edges) >= 1 and all(
        a < b for a, b in zip(self.radius_edges, self.radius_edges[1:])),
           "evaluate.radius_edges", "an increasing list", self.radius_edges)
    _check(self.border_cells >= 0, "evaluate.border_cells", ">= 0", self.border_cells)
    _check(self.levels is None or self.levels >= 1, "evaluate.levels", ">= 1 or null",
           self.levels)
    _check(self.label_r_min is None or self.label_r_min > 0, "evaluate.label_r_min",
           "> 0 or null", self.label_r_min)
    _check(self.match_min_tol > 0, "evaluate.match_min_tol", "> 0", self.match_min_tol)
    _check(self.reliability_bins >= 2, "evaluate.reliability_bins", ">= 2",
           self.reliability_bins)


@dataclasses.dataclass
class EvaluateRunConfig:
  """The root configuration of ``evaluate.py``."""

  checkpoint: str | None = None  # Default: the latest run's calibrated (or best) checkpoint.
  # "droplet_sim/<config>" (built under data_dir when missing), "droplet_images" (with
  # images=...), or the version directory of a dataset built earlier.
  dataset: str = "droplet_sim/380x507_seed"
  data_dir: str = "datasets"
  images: str | None = None  # droplet_images: a folder, glob or file.
  annotations: str | None = None  # droplet_images: CSV with image, x, y, r.
  # droplet_images: resize factor; null: the one the checkpoint was calibrated at (1 for
  # a model trained on simulations only), as infer.py reads.
  scale: float | None = None
  limit: int | None = None  # Evaluate the first N images only.
  evaluate: EvaluateConfig = dataclasses.field(default_factory=EvaluateConfig)

  def __post_init__(self):
    _check(self.scale is None or self.scale > 0, "scale", "> 0 or null", self.scale)
    _check(self.limit is None or self.limit >= 1, "limit", ">= 1 or null", self.limit)


def register_evaluate_configs() -> None:
  from hydra.core.config_store import ConfigStore

  ConfigStore.instance().store(name="evaluate_schema", node=EvaluateRunConfig)
