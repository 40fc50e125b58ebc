"""The CNN encoder: image -> raw posterior parameters on the cell grid."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from dropamort.config import EncoderConfig, ModelConfig
from dropamort.encoder.posterior import CatalogPosterior, heads_size, posterior_from_heads


def space_to_depth(x_BHWC, block: int):
  b, h, w, c = x_BHWC.shape
  x = x_BHWC.reshape(b, h // block, block, w // block, block, c)
  return x.transpose(0, 1, 3, 2, 4, 5).reshape(b, h // block, w // block, block * block * c)


class Encoder(nn.Module):
  """Fully convolutional: works on any image whose sides are multiples of ``cell``.

  Full-resolution stem convolutions see sub-cell detail; space-to-depth moves exactly
  one cell's pixels into each grid position; residual 3×3 blocks at cell resolution give
  the receptive field (``EncoderConfig.receptive_field``) and context; 1×1 heads give
  the per-cell factors, and a pooled head the per-image background.
  """

  cfg: EncoderConfig
  cell: int
  types: int
  channels: int

  @nn.compact
  def __call__(self, images_BHWC) -> CatalogPosterior:
    cfg = self.cfg
    # A fixed affine map, not per-image statistics: every cell's factors then depend only
    # on the pixels in its receptive field, so tiled and whole-image inference agree.
    h = (images_BHWC - 0.5) * 5.0
    for _ in range(cfg.stem_depth):
      h = nn.gelu(nn.Conv(cfg.stem, (3, 3))(h))
    h = nn.Conv(cfg.width, (1, 1))(space_to_depth(h, self.cell))
    for _ in range(cfg.depth):
      h = h + nn.Conv(cfg.width, (3, 3))(nn.gelu(nn.LayerNorm()(h)))
    h = nn.gelu(nn.LayerNorm()(h))
    heads_BYXK = nn.Conv(heads_size(self.types), (1, 1))(h)
    # Background: pooled features plus the logit of the mean colour (a strong hint, since
    # most pixels are bare background).
    mean_BC = jnp.clip(images_BHWC.mean(axis=(1, 2)), 1e-3, 1 - 1e-3)
    pooled = jnp.concatenate([h.mean(axis=(1, 2)), jax.scipy.special.logit(mean_BC)], -1)
    bg_B2C = nn.Dense(2 * self.channels)(nn.gelu(nn.Dense(32)(pooled)))
    bg_loc = jax.scipy.special.logit(mean_BC) + bg_B2C[:, :self.channels]
    return posterior_from_heads(heads_BYXK, bg_loc, bg_B2C[:, self.channels:],
                                types=self.types, min_scale=cfg.min_scale)


def make_encoder(encoder: EncoderConfig, model: ModelConfig) -> Encoder:
  """The encoder module for ``model``'s images and catalog (cell, types, channels)."""
  return Encoder(cfg=encoder, cell=model.cell, types=model.types, channels=model.channels)
