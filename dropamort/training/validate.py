"""Validation on the run's fixed simulated set: NLL and the detection/calibration metrics."""

from __future__ import annotations

import jax
from jax.experimental import multihost_utils
import numpy as np

from dropamort.config import ModelConfig
from dropamort.datasets import store
from dropamort.datasets.droplet_sim import DropletSim, custom_config
from dropamort.metrics import detection_metrics
from dropamort.model.catalog import to_table


def validation_set(model: ModelConfig, decoder_params, *, images: int, seed: int,
                   data_dir: str):
  """The fixed validation set: a ``droplet_sim`` set of ``model`` with these decoder
  parameters (``images`` images drawn from ``seed``), built once under ``data_dir`` and
  read back from there, so it is the same in every run and resume and
  ``evaluate.py dataset=<its directory>`` measures on exactly these images.

  Returns:
    (images_BHWC, true Catalog batch).
  """
  # On the host: process 0 simulates alone, so no array may span the other processes.
  decoder_params = jax.device_get(decoder_params)
  config = custom_config(model, images, seed, decoder_params)
  if jax.process_index() == 0:  # Multi-host: one process builds, then all read.
    store.build(DropletSim, config, data_dir, decoder_params=decoder_params)
  multihost_utils.sync_global_devices("dropamort validation set built")
  return store.read_sim(store.build(DropletSim, config, data_dir,
                                    decoder_params=decoder_params))


def validate(posterior_fn, params, images, catalog, *, cell: int, threshold: float,
             batch: int = 32) -> dict:
  """Metrics of the encoder's posterior on (images, true catalogs).

  Returns:
    nll (mean -log q(true catalog | image)), and ``metrics.detection_metrics`` of the
    thresholded posterior tables against the truth.
  """
  nll, pred_tables = [], []
  for start in range(0, images.shape[0], batch):
    sl = slice(start, start + batch)
    post = posterior_fn(params, images[sl])
    part = jax.tree.map(lambda a: a[sl], catalog)
    nll.append(np.asarray(-post.log_prob(part)))
    pred_tables += post.to_table(cell, threshold)
  out = {"nll": float(np.concatenate(nll).mean())}
  out.update(detection_metrics(to_table(catalog, cell), pred_tables))
  return out
