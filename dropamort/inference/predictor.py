"""Single-pass inference: the trained encoder, decoder and prior, ready to read images.

The encoder is called through the reader's ``pyramid.Encoding`` (batches of images of one
shape, tiles of large images, batches split over all local devices with the parameters
replicated), as calibration calls it.
"""

from __future__ import annotations

from dropamort.config import ConfigError, TrainConfig
from dropamort.encoder.cnn import make_encoder
from dropamort.encoder.posterior import CatalogPosterior
from dropamort.model.prior import Prior
from dropamort.parallel import replicate
from dropamort.pyramid import Encoding, TilePlan

__all__ = ["Predictor", "TilePlan"]


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
    self.encoding = Encoding(make_encoder(cfg.encoder, cfg.model), cfg.model.cell, plan,
                             devices)
    mesh = self.encoding.mesh
    self.params = params if mesh is None else replicate(params, mesh)

  @property
  def devices(self) -> int:
    return self.encoding.devices

  @property
  def cell(self) -> int:
    return self.cfg.model.cell

  def posterior(self, image_HWC) -> CatalogPosterior:
    """q(catalog | image) on the padded image's cell grid (batch of one)."""
    return self.posteriors([image_HWC])[0]

  def posteriors(self, images, batch: int = 8) -> list[CatalogPosterior]:
    """``posterior`` of each image; images whose padded shapes agree (a folder from one
    microscope) share encoder calls of up to ``batch`` images, split over the devices."""
    return self.encoding.posteriors(self.params, images, batch)
