"""Typed configuration schemas.

Hydra composes YAML from ``conf/``; the dataclasses here are the schemas it is checked
against (registered in Hydra's ConfigStore by ``register_configs``) and the only form in
which configuration enters the package. Range checks run in ``__post_init__`` so a bad
value fails once, at start, with one line naming the field and the allowed range.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from dropamort.errors import UserError


class ConfigError(UserError, ValueError):
  """A configuration value is out of its allowed range."""


def _check(ok: bool, field: str, allowed: str, value) -> None:
  if not ok:
    raise ConfigError(f"{field} must be {allowed} (got {value!r})")


@dataclasses.dataclass
class ModelConfig:
  """The generative droplet model: prior, optics decoder and noise.

  Lengths are in pixels of the image the model describes. ``density`` is the intensity of
  droplet centres per pixel² *before* hard-core thinning.
  """

  height: int = 64
  width: int = 64
  channels: int = 3  # C: image channels.
  types: int = 3  # T: composition values per droplet.
  cell: int = 4  # Side of a catalog cell; each cell holds at most one droplet.
  density: float = 0.02
  radius_loc: float = 0.7  # log r ~ TruncatedNormal(radius_loc, radius_scale).
  radius_scale: float = 0.5
  radius_min: float = 1.0
  radius_max: float = 8.0
  # Background per channel, in decoder units (pre-sigmoid), ~ U(low, high); one value
  # for all channels or one per channel. The default is grey-beige, like the example.
  background_low: tuple[float, ...] = (0.2, 0.2, 0.0)
  background_high: tuple[float, ...] = (0.7, 0.7, 0.5)
  # A smooth background field: deviations ~ N(0, background_sd) on knots every
  # background_knot px, interpolated (0: one constant background per image).
  background_knot: int = 32
  background_sd: float = 0.1
  # Layers of droplets larger than radius_max (each 2x the radius and cell of the one
  # below, the pyramid's step, so a droplet of layer j looks exactly as the same droplet
  # read at pyramid level j): drawn in simulations but not catalogued at this scale, so
  # the encoder learns not to read a large droplet as small ones; pyramid inference reads
  # them at coarser levels. larger_fraction: area share of each layer before thinning.
  larger_layers: int = 4
  larger_fraction: float = 0.075
  noise_sigma: float = 0.05
  reach: float = 2.0  # A droplet affects pixels within reach * r of its centre.
  hard_core: bool = True  # Thin overlapping droplets (Matérn type II).
  min_gap: float = 0.0  # Extra clearance (px) required between droplet edges.
  margin: int = 2  # Cells simulated around each training image, then cropped.
  shift: bool = True  # Crop at a random sub-cell offset (needs margin >= 1).
  decoder_hidden: tuple[int, ...] = (64, 32, 16)
  decoder_params: str = "default"  # "default" or a path to a .npz parameter file.
  # How the decoder draws a droplet (model.decoder.DropletOpticsModel): "free" may shade
  # anywhere inside the disc, so calibration corrects its radii (calibrate.outline, the
  # edge map); "edge" (opt-in, issue 25): r is the droplet's edge, no correction.
  appearance: str = "free"
  # Droplets' edges darker ("dark", bright-field) or brighter ("bright") than the
  # background in every channel, or differing from it in any colour, per pixel ("either":
  # rims dark on one side and bright on the other) (appearance "edge").
  contrast: str = "dark"

  def __post_init__(self):
    self.decoder_hidden = tuple(self.decoder_hidden)
    _check(self.cell >= 1, "model.cell", ">= 1", self.cell)
    _check(self.height >= self.cell and self.width >= self.cell,
           "model.height/model.width", f">= model.cell ({self.cell})",
           (self.height, self.width))
    _check(self.channels >= 1, "model.channels", ">= 1", self.channels)
    _check(self.types >= 1, "model.types", ">= 1", self.types)
    _check(self.density >= 0, "model.density", ">= 0", self.density)
    _check(self.density * self.cell**2 <= 1, "model.density",
           f"<= 1/cell² = {1 / self.cell**2:g} (one droplet per cell at most)",
           self.density)
    _check(math.isfinite(self.radius_loc), "model.radius_loc", "finite", self.radius_loc)
    _check(self.radius_scale > 0, "model.radius_scale", "> 0", self.radius_scale)
    _check(self.radius_min > 0, "model.radius_min", "> 0", self.radius_min)
    _check(self.radius_max > self.radius_min, "model.radius_max",
           f"> model.radius_min ({self.radius_min})", self.radius_max)
    self.background_low = tuple(self.background_low)
    self.background_high = tuple(self.background_high)
    for name in ("background_low", "background_high"):
      n = len(getattr(self, name))
      _check(n in (1, self.channels), f"model.{name}",
             f"1 or model.channels ({self.channels}) values", getattr(self, name))
    _check(all(h > l for l, h in np.broadcast(self.background_low, self.background_high)),
           "model.background_high", f"> model.background_low ({self.background_low})",
           self.background_high)
    _check(self.noise_sigma > 0, "model.noise_sigma", "> 0", self.noise_sigma)
    _check(self.background_knot >= 0, "model.background_knot", ">= 0 (0: constant)",
           self.background_knot)
    _check(self.background_sd > 0, "model.background_sd", "> 0", self.background_sd)
    _check(self.larger_layers >= 0, "model.larger_layers", ">= 0", self.larger_layers)
    _check(0 <= self.larger_fraction <= 1, "model.larger_fraction", "in [0, 1]",
           self.larger_fraction)
    _check(self.reach > 0, "model.reach", "> 0", self.reach)
    _check(self.min_gap >= 0, "model.min_gap", ">= 0", self.min_gap)
    _check(self.margin >= (1 if self.shift else 0), "model.margin",
           ">= 1 when model.shift is on, else >= 0", self.margin)
    _check(len(self.decoder_hidden) >= 1 and all(h >= 1 for h in self.decoder_hidden),
           "model.decoder_hidden", "a non-empty list of positive widths",
           self.decoder_hidden)
    _check(self.appearance in ("edge", "free"), "model.appearance", "'edge' or 'free'",
           self.appearance)
    _check(self.contrast in ("dark", "bright", "either"), "model.contrast",
           "'dark', 'bright' or 'either'", self.contrast)

  @property
  def grid_shape(self) -> tuple[int, int]:
    """Cells covering the image (the last row/column may be partly outside)."""
    return (-(-self.height // self.cell), -(-self.width // self.cell))

  @property
  def reach_cells(self) -> int:
    """Cells, on each side, whose droplets can reach a pixel of a given cell."""
    return int(math.ceil(self.reach * self.radius_max / self.cell))

  def larger(self, j: int) -> tuple[int, float, float]:
    """(cell, smallest radius, largest radius) of larger layer j >= 1."""
    s = int(self.larger_scale(j))
    return self.cell * s, self.radius_max * s / 2, self.radius_max * s

  def larger_scale(self, j: int) -> float:
    """How much larger layer j's droplets are drawn than the band's: the decoder renders
    a droplet of layer j at r as a band droplet at r / 2**j magnified, the same picture
    the pyramid's level j makes of it."""
    return float(2**j)


@dataclasses.dataclass
class EncoderConfig:
  """The CNN encoder: a full-resolution stem, space-to-depth to the cell grid, residual
  3×3 blocks at cell resolution, one 1×1 head per posterior factor."""

  stem: int = 16  # Channels of the full-resolution convolutions.
  stem_depth: int = 2
  width: int = 64  # Channels at cell resolution.
  depth: int = 4  # Residual blocks at cell resolution.
  min_scale: float = 1e-3  # Floor of every posterior scale (numerical safety).

  def __post_init__(self):
    for name in ("stem", "stem_depth", "width", "depth"):
      _check(getattr(self, name) >= 1, f"encoder.{name}", ">= 1", getattr(self, name))
    _check(self.min_scale > 0, "encoder.min_scale", "> 0", self.min_scale)

  def receptive_field(self, cell: int) -> int:
    """Receptive field (px) of one output cell."""
    return 1 + 2 * self.stem_depth + (cell - 1) + 2 * self.depth * cell


@dataclasses.dataclass
class OptimConfig:
  """AdamW with linear warm-up, cosine decay and global-norm gradient clipping."""

  lr: float = 2e-3
  warmup_steps: int = 100
  end_lr_fraction: float = 0.02
  weight_decay: float = 1e-4
  clip_norm: float = 10.0

  def __post_init__(self):
    _check(self.lr > 0, "optim.lr", "> 0", self.lr)
    _check(self.warmup_steps >= 0, "optim.warmup_steps", ">= 0", self.warmup_steps)
    _check(0 <= self.end_lr_fraction <= 1, "optim.end_lr_fraction", "in [0, 1]",
           self.end_lr_fraction)
    _check(self.weight_decay >= 0, "optim.weight_decay", ">= 0", self.weight_decay)
    _check(self.clip_norm > 0, "optim.clip_norm", "> 0", self.clip_norm)


@dataclasses.dataclass
class TrainerConfig:
  """The training loop: length, batch, validation, checkpointing, logging."""

  steps: int = 3000
  batch_size: int = 32
  seed: int = 0
  val_every: int = 500
  val_images: int = 128
  val_seed: int = 12345  # Fixed: the validation set is the same in every run.
  checkpoint_every: int = 500
  log_every: int = 25
  threshold: float = 0.5  # p above which a cell counts as a detection.
  best_metric: str = "f1"  # Validation metric (higher is better) that picks 'best'.
  progress: bool = True
  max_nonfinite: int = 10  # Stop after this many non-finite losses in a row.
  data_parallel: bool = True  # Split each batch over all visible devices (if several).
  distributed: bool = False  # Multi-host: jax.distributed.initialize() before training.

  def __post_init__(self):
    for name in ("steps", "batch_size", "val_every", "val_images", "checkpoint_every",
                 "log_every", "max_nonfinite"):
      _check(getattr(self, name) >= 1, f"trainer.{name}", ">= 1", getattr(self, name))
    _check(0 < self.threshold < 1, "trainer.threshold", "in (0, 1)", self.threshold)
    allowed = ("f1", "precision", "recall", "jaccard")
    _check(self.best_metric in allowed, "trainer.best_metric", f"one of {allowed}",
           self.best_metric)


@dataclasses.dataclass
class DataConfig:
  """Real images to calibrate the generative model on (None: pure simulation)."""

  real: str | None = None  # A folder, a glob or one image.
  scale: float = 1.0  # Resize factor applied when the images are read.
  columns: tuple[float, float] = (0.0, 1.0)  # Use only this fraction range of each width.
  # Calibrate on at most this many of the images, evenly spaced by name (null: all). Each
  # round reads every calibration image at every scale, and all are held in memory.
  max_images: int | None = 48

  def __post_init__(self):
    self.columns = tuple(self.columns)
    _check(self.max_images is None or self.max_images >= 1, "data.max_images",
           ">= 1 or null (all)", self.max_images)
    _check(self.scale > 0, "data.scale", "> 0", self.scale)
    _check(len(self.columns) == 2 and 0 <= self.columns[0] < self.columns[1] <= 1,
           "data.columns", "[start, end] with 0 <= start < end <= 1", self.columns)


@dataclasses.dataclass
class CalibrateConfig:
  """Wake–sleep rounds (used when ``data.real`` is set)."""

  rounds: int = 3
  sleep_steps: int = 1000  # Encoder steps on simulations per round (after the first
  # ``trainer.steps``-long sleep phase).
  wake_steps: int = 1000  # At most; the stage stops earlier once the held-out loss
  # has not improved for wake_patience evaluations (every wake_eval_every steps).
  wake_eval_every: int = 25
  wake_patience: int = 4
  wake_eval_crops: int = 64  # Fixed crops of the held-out images that judge the wake.
  wake_batch: int = 16  # Real crops per wake step.
  wake_crop: int = 64  # Side of a wake crop (px, a multiple of model.cell); pyramid
  # levels smaller than a crop are not fitted.
  wake_lr: float = 3e-3
  wake_levels: str = "pixels"  # How wake crops are spread over the pyramid levels:
  # "pixels", uniform over every level's positions (a level 2^k coarser 4^k times less
  # often); "area", each level as often as the image area it covers (training.wake).
  wake_samples: int = 1  # Catalog samples from q per crop and step.
  refit_prior: bool = True
  # For the decoder whose r is not the droplet's edge (model.appearance "free"); with
  # "edge" the likelihood places the edge: set outline=false and polish_steps=0.
  outline: bool = True  # Search where the images put droplets' outlines: the wake
  # holds the decoder's edge sharp, then one radius scale s of the reads is chosen by the
  # held-out RMSE of the overlap-resolved point render, each candidate's decoder refitted
  # for outline_steps wake steps (training.outline); the sleep stage then teaches the
  # encoder to read the outline. Not in a LoG-bootstrapped round. Off, the wake fits the
  # edge's width (a soft edge can paint a rim outside r, so radii stay where they start).
  outline_steps: int = 120
  min_found: float = 0.25  # Bootstrap from LoG blobs if the encoder finds fewer than
  # this fraction of the blobs.
  holdout: float = 0.2  # Share of the real images (of one image's width) held out of the
  # wake stage and the refit, to judge each round.
  larger_floor: float = 0.1  # The refit's least area share of larger droplets (all
  # larger layers together): the encoder must keep learning to leave larger droplets to
  # the coarser pyramid levels, even when the calibration images show none at their scale.
  polish_steps: int = 5000  # At most, after the last round's sleep stage: the decoder,
  # its edge free, fitted to the fitted images as their point catalog renders them,
  # stopped early on the held-out ones (training.polish); 0 leaves the decoder as the
  # last wake stage made it. A finished run continued with more rounds starts its next
  # wake from the polished decoder.

  def __post_init__(self):
    for name in ("rounds", "sleep_steps", "wake_steps", "wake_batch", "wake_samples",
                 "wake_crop", "wake_eval_every", "wake_patience", "wake_eval_crops",
                 "outline_steps"):
      _check(getattr(self, name) >= 1, f"calibrate.{name}", ">= 1", getattr(self, name))
    _check(self.wake_lr > 0, "calibrate.wake_lr", "> 0", self.wake_lr)
    _check(self.wake_levels in ("pixels", "area"), "calibrate.wake_levels",
           '"pixels" or "area"', self.wake_levels)
    _check(0 <= self.min_found <= 1, "calibrate.min_found", "in [0, 1]", self.min_found)
    _check(0 < self.holdout < 1, "calibrate.holdout", "in (0, 1)", self.holdout)
    _check(0 <= self.larger_floor <= 0.9, "calibrate.larger_floor", "in [0, 0.9]",
           self.larger_floor)
    _check(self.polish_steps >= 0, "calibrate.polish_steps", ">= 0", self.polish_steps)


@dataclasses.dataclass
class TrainConfig:
  """The root configuration of ``train.py``: the user tier (``dropamort.user_tier``: what
  a scientist knows, None = unset) over the tuning tier (the groups)."""

  images: str | None = None
  pixel_size: float | None = None
  contrast: str | None = None
  overlap: bool | None = None
  radius_range: tuple[float, float] | None = None
  time_budget: float | None = None  # Minutes.
  steps: int | None = None
  rounds: int | None = None
  seed: int | None = None
  out: str = "runs/train"  # train.py's output folder (hydra.run.dir).
  model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
  encoder: EncoderConfig = dataclasses.field(default_factory=EncoderConfig)
  optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
  trainer: TrainerConfig = dataclasses.field(default_factory=TrainerConfig)
  data: DataConfig = dataclasses.field(default_factory=DataConfig)
  calibrate: CalibrateConfig = dataclasses.field(default_factory=CalibrateConfig)

  def __post_init__(self):
    from dropamort import user_tier  # It reads this module's groups.

    user_tier.apply(self, _check)
    rf, need = self.encoder.receptive_field(self.model.cell), 2 * self.model.radius_max + 4
    _check(rf >= need, "encoder.depth",
           f"large enough for a receptive field >= {need:g} px (largest droplet diameter + "
           f"context; now {rf} px)", self.encoder.depth)
    _check(self.calibrate.wake_crop % self.model.cell == 0, "calibrate.wake_crop",
           f"a multiple of model.cell ({self.model.cell})", self.calibrate.wake_crop)


def register_configs() -> None:
  """Registers the schemas with Hydra's ConfigStore (``train_schema``)."""
  from hydra.core.config_store import ConfigStore

  cs = ConfigStore.instance()
  cs.store(name="train_schema", node=TrainConfig)


def to_dataclass(cfg, schema=TrainConfig):
  """Converts a composed Hydra/OmegaConf config to its dataclass, validating ranges once.

  Raises:
    ConfigError: a value is out of range (one line naming the field).
  """
  from omegaconf import OmegaConf

  obj = OmegaConf.to_object(cfg)
  if not isinstance(obj, schema):  # Composed without the schema: build it explicitly.
    obj = from_dict(schema, obj)
  return obj


def from_dict(schema, data: dict):
  """Builds nested config dataclasses from plain dicts (e.g. a checkpoint's JSON); a field
  the dict lacks takes its default."""
  kwargs = {}
  for f in dataclasses.fields(schema):
    if f.name not in data:
      continue
    value = data[f.name]
    if dataclasses.is_dataclass(f.default_factory if f.default_factory is not
                                dataclasses.MISSING else None):
      value = from_dict(f.default_factory, value)
    kwargs[f.name] = value
  return schema(**kwargs)


def to_dict(cfg) -> dict:
  """A JSON-ready dict of a config dataclass (tuples as lists)."""
  return json_ready(dataclasses.asdict(cfg))


def json_ready(x):
  if isinstance(x, dict):
    return {k: json_ready(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [json_ready(v) for v in x]
  return x
