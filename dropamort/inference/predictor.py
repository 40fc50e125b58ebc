"""Single-pass inference: the encoder's posterior over the whole catalog, per image.

Images of one shape are encoded in batches; with more than one local device the batch is
split over them (a 1-D ``jax.sharding`` mesh, parameters replicated), as in training.
Large images are cut into tiles, and batches of tiles are split the same way.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from dropamort.config import ConfigError, TrainConfig
from dropamort.encoder.cnn import make_encoder
from dropamort.encoder.posterior import CatalogPosterior
from dropamort.inference.tiling import owned_ranges, tile_starts
from dropamort.model.prior import Prior
from dropamort.parallel import AXIS, batch_mesh, replicate


@dataclasses.dataclass(frozen=True)
class TilePlan:
  tile: int = 512  # Tile side in pixels (a multiple of the cell size).
  overlap: int = 8  # Context cells kept around each tile's owned region.
  batch: int = 4  # Tiles per encoder call.


class Predictor:
  """The trained encoder, decoder and fitted prior, ready to read images. Holds no
  per-image state.

  Args:
    prior: the fitted prior and noise (refinement's model); None: ``cfg``'s values.
    devices: split each batch over these (default: all local devices).
  """

  def __init__(self, cfg: TrainConfig, params, decoder_params, plan: TilePlan = TilePlan(),
               devices=None, prior: Prior | None = None):
    self.cfg, self.decoder_params, self.plan = cfg, decoder_params, plan
    self.prior = Prior.from_config(cfg.model) if prior is None else prior
    if plan.tile % cfg.model.cell:
      raise ConfigError(f"infer.tile must be a multiple of the model's cell size "
                        f"{cfg.model.cell} (got {plan.tile!r})")
    devices = list(jax.local_devices() if devices is None else devices)
    self.mesh = batch_mesh(len(devices), devices) if len(devices) > 1 else None
    self.params = params if self.mesh is None else replicate(params, self.mesh)
    encoder = make_encoder(cfg.encoder, cfg.model)
    # One compiled function per input shape; tiles all share one shape.
    self._encode = jax.jit(lambda p, x: encoder.apply({"params": p}, x))

  @property
  def devices(self) -> int:
    return 1 if self.mesh is None else self.mesh.size

  def encode(self, batch_BHWC: np.ndarray) -> CatalogPosterior:
    """The encoder on a batch, split over the devices (padded to a multiple of their
    count with copies of the last image). The result is gathered onto the default device,
    where the rest of inference (tables, refinement) runs."""
    n = len(batch_BHWC)
    if self.mesh is None:
      return self._encode(self.params, jnp.asarray(batch_BHWC))
    extra = -n % self.mesh.size
    if extra:
      batch_BHWC = np.concatenate([batch_BHWC, np.repeat(batch_BHWC[-1:], extra, 0)])
    x = jax.device_put(batch_BHWC, NamedSharding(self.mesh, P(AXIS)))
    post = self._encode(self.params, x)
    return jax.tree.map(lambda a: jnp.asarray(np.asarray(a)[:n]), post)

  @property
  def cell(self) -> int:
    return self.cfg.model.cell

  def pad(self, image_HWC: np.ndarray) -> np.ndarray:
    """Edge-pads to whole cells (and to at least one tile when tiling)."""
    c = self.cell
    h, w = image_HWC.shape[:2]
    ph, pw = -(-h // c) * c, -(-w // c) * c
    if ph > self.plan.tile or pw > self.plan.tile:
      ph, pw = max(ph, self.plan.tile), max(pw, self.plan.tile)
    return np.pad(image_HWC, [(0, ph - h), (0, pw - w), (0, 0)], mode="edge")

  def posterior(self, image_HWC: np.ndarray) -> CatalogPosterior:
    """q(catalog | image) on the padded image's cell grid (batch of one)."""
    return self.posteriors([image_HWC])[0]

  def posteriors(self, images: list[np.ndarray], batch: int = 8) -> list[CatalogPosterior]:
    """``posterior`` of each image; images whose padded shapes agree (a folder from one
    microscope) share encoder calls of up to ``batch`` images, split over the devices."""
    padded = [self.pad(np.asarray(im, np.float32)) for im in images]
    out: list = [None] * len(images)
    groups: dict = {}
    for k, im in enumerate(padded):
      if max(im.shape[:2]) > self.plan.tile:
        out[k] = self._tiled(im)
      else:
        groups.setdefault(im.shape, []).append(k)
    for group in groups.values():
      for b in range(0, len(group), batch):
        ks = group[b:b + batch]
        post = self.encode(np.stack([padded[k] for k in ks]))
        for i, k in enumerate(ks):
          out[k] = jax.tree.map(lambda a, i=i: a[i:i + 1], post)
    return out

  def _tiled(self, padded: np.ndarray) -> CatalogPosterior:
    c, t = self.cell, self.plan.tile // self.cell
    gy, gx = padded.shape[0] // c, padded.shape[1] // c
    sy, sx = tile_starts(gy, t, self.plan.overlap), tile_starts(gx, t, self.plan.overlap)
    ry, rx = owned_ranges(gy, sy, t), owned_ranges(gx, sx, t)
    jobs = [(i, j) for i in range(len(sy)) for j in range(len(sx))]
    batch = -(-self.plan.batch // self.devices) * self.devices  # Whole tiles per device.
    out = None
    for b in range(0, len(jobs), batch):
      chunk = jobs[b:b + batch]
      tiles = np.stack([padded[sy[i] * c:(sy[i] + t) * c, sx[j] * c:(sx[j] + t) * c]
                        for i, j in chunk])
      if len(chunk) < batch:  # Keep one compiled shape.
        tiles = np.concatenate([tiles, np.repeat(tiles[-1:], batch - len(chunk), 0)])
      post = jax.tree.map(np.asarray, self.encode(tiles))
      if out is None:
        out = jax.tree.map(lambda a: np.zeros((1, gy, gx) + a.shape[3:], a.dtype), post)
      for k, (i, j) in enumerate(chunk):
        (y0, y1), (x0, x1) = ry[i], rx[j]
        src = (k, slice(y0 - sy[i], y1 - sy[i]), slice(x0 - sx[j], x1 - sx[j]))
        for name in _CELL_FIELDS:
          getattr(out, name)[0, y0:y1, x0:x1] = getattr(post, name)[src]
    return jax.tree.map(jnp.asarray, out)


_CELL_FIELDS = [f.name for f in dataclasses.fields(CatalogPosterior)]
