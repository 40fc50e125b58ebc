"""Building and reading the datasets: array_record files, ``tfds`` data sources, grain.

    sim = open_sim("380x507_seed", data_dir)        # builds it the first time
    images, catalog = read_sim(sim)                 # float32 (B, H, W, C) and a Catalog
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys

import grain
import jax.numpy as jnp
import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.core import example_serializer

from dropamort.datasets import DatasetError
from dropamort.datasets.droplet_images import DropletImages, images_config
from dropamort.datasets.droplet_sim import DropletSim, DropletSimConfig, named_config
from dropamort.model.catalog import Catalog

FILE_FORMAT = "array_record"


@contextlib.contextmanager
def _quiet():
  """tfds announces every build on stdout/stderr and absl; keep the console for us."""
  logging.getLogger("absl").setLevel(logging.ERROR)
  tfds.display_progress_bar(False)
  with contextlib.redirect_stdout(io.StringIO()):
    yield


@contextlib.contextmanager
def _deterministic_serialization():
  """Examples are protos with a map of features, whose byte order follows Python's
  per-process string hashing unless serialized deterministically (keys sorted). tfds
  does not ask for that; for rebuilds with identical bytes, we do while building."""
  cls = example_serializer.ExampleSerializer
  original = cls.serialize_example
  cls.serialize_example = lambda self, example: self.get_tf_example(
      example).SerializeToString(deterministic=True)
  try:
    yield
  finally:
    cls.serialize_example = original


def build(builder_cls, config, data_dir: str, **kwargs) -> tfds.core.DatasetBuilder:
  """The builder for ``config`` under ``data_dir``, prepared (built if not yet there)."""
  with _quiet(), _deterministic_serialization():
    builder = builder_cls(config=config, data_dir=data_dir, file_format=FILE_FORMAT,
                          **kwargs)
    if not builder.is_prepared():
      print(f"building {builder.name}/{builder.builder_config.name} in {builder.data_dir} "
            f"(first use; reused after)", file=sys.stderr, flush=True)
    builder.download_and_prepare()
  return builder


def parse_sim_name(name: str) -> DropletSimConfig:
  """``{size}_{density}`` or ``{size}_{density}_s{seed}`` -> its config.

  Raises:
    DatasetError: an unknown size or density.
  """
  parts = name.split("_")
  seed = 0
  if len(parts) == 3 and parts[2].startswith("s") and parts[2][1:].isdigit():
    seed = int(parts[2][1:])
    parts = parts[:2]
  known = [c.name for c in DropletSim.BUILDER_CONFIGS]
  if len(parts) != 2 or "_".join(parts) not in known:
    raise DatasetError(f"droplet_sim/{name}: unknown config; known: {', '.join(known)} "
                       f"(append _s<seed> for another seed)")
  return named_config(*parts, seed=seed)


def open_sim(name: str, data_dir: str) -> tfds.core.DatasetBuilder:
  """A standard ``droplet_sim`` set by name, built under ``data_dir`` if missing."""
  cfg = parse_sim_name(name)
  registered = {c.name for c in DropletSim.BUILDER_CONFIGS}
  return build(DropletSim, cfg.name if cfg.name in registered else cfg, data_dir)


def open_directory(path: str, expected=(DropletSim, DropletImages)):
  """A dataset built earlier, from its version directory (.../name/config/2.0.0).

  Raises:
    DatasetError: no such directory, not a dataset, or built by another version.
  """
  if not os.path.isdir(path):
    raise DatasetError(f"{path}: no such dataset directory")
  if not os.path.isfile(os.path.join(path, "dataset_info.json")):
    raise DatasetError(f"{path}: not a built dataset (no dataset_info.json); give the "
                       f"version directory, e.g. datasets/droplet_sim/380x507_seed/2.0.0")
  with _quiet():
    builder = tfds.builder_from_directory(path)
  by_name = {cls.name: cls for cls in expected}
  cls = by_name.get(builder.info.name)
  if cls is None:
    raise DatasetError(f"{path}: a '{builder.info.name}' dataset, not one of "
                       f"{sorted(by_name)}")
  if str(builder.info.version) != str(cls.VERSION):
    raise DatasetError(f"{path}: built by {cls.name} {builder.info.version}; this dropamort "
                       f"reads {cls.VERSION}; rebuild it (delete the folder and run again)")
  return builder


def open_images(images: str, data_dir: str, *, annotations: str | None = None,
                scale: float = 1.0, channels: int = 3) -> tfds.core.DatasetBuilder:
  """A ``droplet_images`` set of a folder (built under ``data_dir`` if missing)."""
  cfg = images_config(images, annotations=annotations, scale=scale, channels=channels)
  return build(DropletImages, cfg, data_dir)


def source(builder, split: str = "test"):
  """The random-access data source of a prepared builder (no TensorFlow)."""
  with _quiet():
    return builder.as_data_source(split=split)


def read_sim(builder, limit: int | None = None, batch: int = 16):
  """All (or the first ``limit``) images and true catalogs of a ``droplet_sim`` set.

  Returns:
    images_BHWC float32 and the ``Catalog`` batch (jax arrays).
  """
  src = source(builder)
  n = len(src) if limit is None else min(limit, len(src))
  fixed = ("image", "on", "offset", "radius", "composition", "background")
  ds = grain.MapDataset.source(src)[:n].map(lambda ex: {k: ex[k] for k in fixed}).batch(batch)
  parts = list(ds)
  cat = lambda k: np.concatenate([p[k] for p in parts])
  catalog = Catalog(on_BYX=jnp.asarray(cat("on")), offset_BYX2=jnp.asarray(cat("offset")),
                    radius_BYX=jnp.asarray(cat("radius")),
                    composition_BYXT=jnp.asarray(cat("composition")),
                    background_BYXC=jnp.asarray(cat("background")))
  return cat("image"), catalog


def read_larger(builder, limit: int | None = None) -> list[dict]:
  """The larger-layer droplets (x, y, r) of each image of a ``droplet_sim`` set."""
  src = source(builder)
  n = len(src) if limit is None else min(limit, len(src))
  return [{k: np.asarray(src[i][f"larger_{k}"]) for k in ("x", "y", "r")} for i in range(n)]


def read_images(builder):
  """The images of a ``droplet_images`` set, one dict each (sizes differ: no batching)."""
  src = source(builder)
  out = []
  for ex in grain.MapDataset.source(src):
    ex = dict(ex)
    name = ex["name"]
    ex["name"] = name.decode() if isinstance(name, bytes) else str(name)
    out.append(ex)
  return out
