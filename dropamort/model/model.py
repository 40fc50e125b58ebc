"""The NumPyro generative model of droplet images (the seed's model on a cell grid)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro.contrib.module import random_flax_module

from dropamort.config import ModelConfig
from dropamort.model.catalog import Catalog
from dropamort.model.decoder import DropletOpticsModel, bind
from dropamort.model.prior import Prior, sample_catalog
from dropamort.model.render import render_local


def decoder_module(cfg: ModelConfig) -> DropletOpticsModel:
  return DropletOpticsModel(channels=cfg.channels, hidden=cfg.decoder_hidden)


def render_catalog(cfg: ModelConfig, decode, catalog: Catalog):
  """Noise-free images of a batch of catalogs on ``cfg``'s canvas (local renderer)."""
  return render_local(decode, catalog, height=cfg.height, width=cfg.width, cell=cfg.cell,
                      reach=cfg.reach, reach_cells=cfg.reach_cells)


@functools.lru_cache(maxsize=32)
def _compiled_renderer(channels: int, hidden: tuple, height: int, width: int, cell: int,
                       reach: float, reach_cells: int):
  """``render_catalog`` with the decoder's parameters as an argument, as one jitted
  function: outside jit (NumPyro's ``SVI.init`` runs the model eagerly) it is one
  compiled program instead of hundreds of op-by-op ones; inside jit it is inlined."""
  module = DropletOpticsModel(channels=channels, hidden=hidden)
  return jax.jit(lambda params, catalog: render_local(
      bind(module, params), catalog, height=height, width=width, cell=cell, reach=reach,
      reach_cells=reach_cells))


def droplet_model(cfg: ModelConfig, prior: Prior, decoder_params=None, images_BHWC=None,
                  batch: int = 1):
  """Images of droplets: prior catalog -> optics decoder -> Normal pixel noise.

  Args:
    cfg: the model's structure; its height and width are the canvas size.
    prior: the prior's and the noise's numbers (``Prior.from_config(cfg)`` to start).
    decoder_params: frozen decoder parameters, or None to give every decoder weight the
      seed's Normal(0, 1) prior (sites ``decoder/...``).
    images_BHWC: observed images, or None to simulate.
    batch: number of images (must equal ``images_BHWC.shape[0]`` when observed).

  Returns:
    The (thinned) catalog.
  """
  if images_BHWC is not None:
    batch = images_BHWC.shape[0]
  catalog = sample_catalog(cfg, prior, batch)
  if decoder_params is None:
    z = jnp.zeros((1,))
    decode = random_flax_module("decoder", decoder_module(cfg), dist.Normal(0.0, 1.0),
                                jnp.zeros((1, cfg.channels)), z, z, z,
                                jnp.zeros((1, cfg.types)))
    mean_BHWC = render_catalog(cfg, decode, catalog)
  else:
    mean_BHWC = _compiled_renderer(cfg.channels, cfg.decoder_hidden, cfg.height, cfg.width,
                                   cfg.cell, cfg.reach, cfg.reach_cells)(decoder_params,
                                                                         catalog)
  with numpyro.plate("image_batch", batch, dim=-1):
    numpyro.sample("image", dist.Normal(mean_BHWC, prior.noise_sigma).to_event(3),
                   obs=images_BHWC)
  return catalog
