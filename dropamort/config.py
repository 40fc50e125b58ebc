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


class ConfigError(ValueError):
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
  noise_sigma: float = 0.05
  reach: float = 2.0  # A droplet affects pixels within reach * r of its centre.
  hard_core: bool = True  # Thin overlapping droplets (Matérn type II).
  min_gap: float = 0.0  # Extra clearance (px) required between droplet edges.
  margin: int = 2  # Cells simulated around each training image, then cropped.
  decoder_hidden: tuple[int, ...] = (32, 16, 8)
  decoder_params: str = "default"  # "default" or a path to a .npz parameter file.

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
    _check(self.reach > 0, "model.reach", "> 0", self.reach)
    _check(self.min_gap >= 0, "model.min_gap", ">= 0", self.min_gap)
    _check(self.margin >= 0, "model.margin", ">= 0", self.margin)
    _check(len(self.decoder_hidden) >= 1 and all(h >= 1 for h in self.decoder_hidden),
           "model.decoder_hidden", "a non-empty list of positive widths",
           self.decoder_hidden)

  @property
  def grid_shape(self) -> tuple[int, int]:
    """Cells covering the image (the last row/column may be partly outside)."""
    return (-(-self.height // self.cell), -(-self.width // self.cell))

  @property
  def reach_cells(self) -> int:
    """Cells, on each side, whose droplets can reach a pixel of a given cell."""
    return int(math.ceil(self.reach * self.radius_max / self.cell))
