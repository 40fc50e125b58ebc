"""The CNN encoder: image -> raw posterior parameters on the cell grid."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from dropamort.config import EncoderConfig, ModelConfig
from dropamort.encoder.posterior import CatalogPosterior, heads_size, posterior_from_heads
from dropamort.model.background import local_mean

BACKGROUND_WINDOW = 7  # Cells around a cell whose mean colour hints at its background.


def space_to_depth(x_BHWC, block: int):
  b, h, w, c = x_BHWC.shape
  x = x_BHWC.reshape(b, h // block, block, w // block, block, c)
  return x.transpose(0, 1, 3, 2, 4, 5).reshape(b, h // block, w // block, block * block * c)


class Encoder(nn.Module):
  """Fully convolutional: works on any image whose sides are multiples of ``cell``.

  Full-resolution stem convolutions see sub-cell detail; space-to-depth moves exactly
  one cell's pixels into each grid position; residual 3×3 blocks at cell resolution give
  the receptive field (``EncoderConfig.receptive_field``) and context; 1×1 heads give
  the per-cell factors, the background field's included.
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
    droplet_heads = nn.Conv(heads_size(self.types, self.channels) - 2 * self.channels,
                            (1, 1))(h)
    # The background's terms (one per cell and channel, very sharp) would drown the
    # droplets' in the shared trunk: its head learns on the trunk's features, the trunk
    # from the droplets alone.
    bg_heads = nn.Conv(2 * self.channels, (1, 1))(jax.lax.stop_gradient(h))
    heads_BYXK = jnp.concatenate([droplet_heads, bg_heads], -1)
    # Background: the logit of the local mean colour plus a learned correction.
    mean_BYXC = jnp.clip(local_mean(images_BHWC, self.cell, BACKGROUND_WINDOW), 1e-3,
                         1 - 1e-3)
    return posterior_from_heads(heads_BYXK, jax.scipy.special.logit(mean_BYXC),
                                types=self.types, min_scale=cfg.min_scale)


def make_encoder(encoder: EncoderConfig, model: ModelConfig) -> Encoder:
  """The encoder module for ``model``'s images and catalog (cell, types, channels)."""
  return Encoder(cfg=encoder, cell=model.cell, types=model.types, channels=model.channels)
