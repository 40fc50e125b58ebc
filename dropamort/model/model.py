"""The NumPyro generative model of droplet images (the seed's model on a cell grid)."""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro.contrib.module import random_flax_module

from dropamort.config import ModelConfig
from dropamort.model.catalog import Catalog
from dropamort.model.decoder import DropletOpticsModel, bind, load_params
from dropamort.model.prior import Prior, sample_scene
from dropamort.model.render import Layer, render_layers


def decoder_module(cfg: ModelConfig) -> DropletOpticsModel:
  return DropletOpticsModel(channels=cfg.channels, hidden=cfg.decoder_hidden, reach=cfg.reach,
                            appearance=cfg.appearance, contrast=cfg.contrast)


def configured_decoder_params(cfg: ModelConfig):
  """The configured decoder's parameters (``model.decoder_params``), checked against it."""
  return load_params(cfg.decoder_params, cfg.channels, cfg.types, cfg.decoder_hidden,
                     cfg.appearance, cfg.contrast)


def scene_layers(cfg: ModelConfig, catalog: Catalog, larger=()) -> list[Layer]:
  """The render layers of a scene: the band catalog, then the larger layers."""
  layers = [Layer(catalog, cfg.cell, cfg.reach_cells)]
  for j, cat in enumerate(larger, start=1):
    cell, _, hi = cfg.larger(j)
    layers.append(Layer(cat, cell, int(math.ceil(cfg.reach * hi / cell)), cfg.larger_scale(j)))
  return layers


def render_catalog(cfg: ModelConfig, decode, catalog: Catalog, larger=(), *, window=None):
  """Noise-free images of a batch of scenes on ``cfg``'s canvas (local renderer); with
  ``window`` = (origin, height, width) px only that window of it (``render_layers``)."""
  origin, height, width = (0, cfg.height, cfg.width) if window is None else window
  return render_layers(decode, scene_layers(cfg, catalog, larger), height=height,
                       width=width, reach=cfg.reach, origin=origin)


@functools.lru_cache(maxsize=32)
def _compiled_renderer(cfg_items: tuple):
  """``render_catalog`` with the decoder's parameters as an argument, as one jitted
  function: outside jit (NumPyro's ``SVI.init`` runs the model eagerly) it is one
  compiled program instead of hundreds of op-by-op ones; inside jit it is inlined."""
  cfg = ModelConfig(**dict(cfg_items))
  module = decoder_module(cfg)
  return jax.jit(lambda params, catalog, larger: render_catalog(
      cfg, bind(module, params), catalog, larger))


def droplet_model(cfg: ModelConfig, prior: Prior, decoder_params=None, images_BHWC=None,
                  batch: int = 1, background=None):
  """Images of droplets: prior catalog -> optics decoder -> Normal pixel noise.

  Args:
    cfg: the model's structure; its height and width are the canvas size.
    prior: the prior's and the noise's numbers (``Prior.from_config(cfg)`` to start).
    decoder_params: frozen decoder parameters, or None to give every decoder weight the
      seed's Normal(0, 1) prior (sites ``decoder/...``).
    images_BHWC: observed images, or None to simulate.
    batch: number of images (must equal ``images_BHWC.shape[0]`` when observed).
    background: per-cell background (B, gy, gx, C) to hold fixed instead of sampling it.

  Returns:
    The (thinned) band catalog and the larger layers' catalogs.
  """
  if images_BHWC is not None:
    batch = images_BHWC.shape[0]
  catalog, larger = sample_scene(cfg, prior, batch, background)
  if decoder_params is None:
    z = jnp.zeros((1,))
    decoder_params = random_flax_module("decoder", decoder_module(cfg), dist.Normal(0.0, 1.0),
                                        jnp.zeros((1, cfg.channels)), z, z, z,
                                        jnp.zeros((1, cfg.types)))
  image_likelihood(cfg, decoder_params, prior.noise_sigma, catalog, larger, images_BHWC)
  return catalog, larger


def image_likelihood(cfg: ModelConfig, decoder, noise_sigma, catalog: Catalog, larger=(),
                     images_BHWC=None):
  """The model's ``image`` site: the catalog rendered by the decoder, Normal pixel noise.

  ``droplet_model`` ends with it and SVI refinement conditions it; the wake's objective
  (``objective.expected_log_likelihood``) equals its log density with the unscored pixels
  masked (tests/test_one_likelihood.py). ``decoder`` is the decoder's parameters, or
  (inside ``droplet_model`` with random weights) the bound random module.
  """
  if callable(decoder):
    mean_BHWC = render_catalog(cfg, decoder, catalog, larger)
  else:
    items = tuple((f.name, getattr(cfg, f.name)) for f in dataclasses.fields(cfg))
    mean_BHWC = _compiled_renderer(items)(decoder, catalog, tuple(larger))
  noise = dist.Normal(mean_BHWC, noise_sigma)
  with numpyro.plate("image_batch", mean_BHWC.shape[0], dim=-1):
    return numpyro.sample("image", noise.to_event(3), obs=images_BHWC)
