"""On-the-fly simulation of training images from the NumPyro model (jittable)."""

from __future__ import annotations

import dataclasses
import functools

import jax
from numpyro import handlers

from dropamort.config import ConfigError, ModelConfig
from dropamort.model.catalog import Catalog
from dropamort.model.model import droplet_model


def canvas_config(cfg: ModelConfig) -> ModelConfig:
  """The model on the image plus ``margin`` cells on every side."""
  pad = 2 * cfg.margin * cfg.cell
  return dataclasses.replace(cfg, height=cfg.height + pad, width=cfg.width + pad, margin=0)


def simulate(key, decoder_params, *, cfg: ModelConfig, n: int):
  """Simulates ``n`` images and their true catalogs, with no Python loop over either.

  A margin of ``cfg.margin`` cells is simulated around each image and cropped away, so
  droplets cut by the frame occur; the catalog keeps the droplets whose centres lie in
  the image. ``cfg`` and ``n`` are static: bind them (``make_simulate``) before jitting.

  Returns:
    images_BHWC and the ``Catalog`` batch.
  """
  if cfg.height % cfg.cell or cfg.width % cfg.cell:
    raise ConfigError(f"model.height/model.width must be multiples of model.cell "
                      f"({cfg.cell}) to simulate (got {(cfg.height, cfg.width)})")
  canvas = canvas_config(cfg)
  with handlers.seed(rng_seed=key), handlers.trace() as tr:
    catalog = droplet_model(canvas, decoder_params, None, n)
  m, px = cfg.margin, cfg.margin * cfg.cell
  images = tr["image"]["value"][:, px:px + cfg.height, px:px + cfg.width]
  gy, gx = cfg.grid_shape
  return images, catalog.crop(m, m, gy, gx)


def make_simulate(cfg: ModelConfig, n: int):
  """``simulate`` with its static configuration bound and jitted: f(key, params)."""
  return jax.jit(functools.partial(simulate, cfg=cfg, n=n))
