"""``droplet_images``: a folder of real images, optionally with annotations (TFDS).

The annotation CSV has columns ``image`` (file name), ``x``, ``y``, ``r`` in the original
image's pixels (the ``image`` column may be left out when the folder holds one image).
Images are stored after ``scale`` (float32 in [0, 1]), annotations in the same scaled
frame; an image without rows in the CSV is stored as unlabelled (``annotated`` false).
The config name is a hash of the image bytes, the annotations and the scale, so a
changed folder builds a new set instead of reading a stale one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os

import numpy as np
import pandas as pd
import tensorflow_datasets as tfds

from dropamort.data.images import ImageError, find_images, read_image, resize
from dropamort.datasets import DatasetError


@dataclasses.dataclass(eq=False)
class DropletImagesConfig(tfds.core.BuilderConfig):
  images: str = ""  # Folder, glob or file.
  annotations: str | None = None
  scale: float = 1.0
  channels: int = 3


def read_annotations(path: str, names: list[str]) -> dict[str, pd.DataFrame]:
  """Annotation rows per image file name.

  Raises:
    DatasetError: unreadable CSV, missing columns, or rows naming an unknown image.
  """
  try:
    df = pd.read_csv(path)
  except (OSError, ValueError) as err:
    raise DatasetError(f"{path}: not a readable annotation CSV ({err})") from None
  missing = {"x", "y", "r"} - set(df.columns)
  if missing:
    raise DatasetError(f"{path}: annotation CSV lacks column(s) {sorted(missing)} "
                       f"(needs image, x, y, r)")
  if "image" not in df.columns:
    if len(names) != 1:
      raise DatasetError(f"{path}: needs an 'image' column when the folder holds "
                         f"{len(names)} images")
    df = df.assign(image=names[0])
  unknown = sorted(set(df["image"].astype(str)) - set(names))
  if unknown:
    raise DatasetError(f"{path}: rows name images that are not in the folder: {unknown[:3]}")
  if not np.isfinite(df[["x", "y", "r"]].to_numpy(float)).all() or (df["r"] <= 0).any():
    raise DatasetError(f"{path}: x, y must be finite and r > 0 in every row")
  return {name: rows for name, rows in df.groupby(df["image"].astype(str))}


def images_config(images: str, *, annotations: str | None = None, scale: float = 1.0,
                  channels: int = 3) -> DropletImagesConfig:
  """A config named by the content it will store.

  Raises:
    DatasetError: no images found, or a missing annotation file.
  """
  try:
    paths = find_images(images)
  except ImageError as err:
    raise DatasetError(str(err)) from None
  if not all(os.path.isfile(p) for p in paths):
    raise DatasetError(f"{images}: no such image file or folder")
  if annotations is not None and not os.path.isfile(annotations):
    raise DatasetError(f"{annotations}: annotation file not found")
  h = hashlib.sha256(f"{scale}|{channels}".encode())
  for p in paths + ([annotations] if annotations else []):
    h.update(os.path.basename(p).encode())
    with open(p, "rb") as f:
      h.update(hashlib.sha256(f.read()).digest())
  return DropletImagesConfig(name=f"set_{h.hexdigest()[:12]}", images=images,
                             annotations=annotations, scale=scale, channels=channels,
                             description=f"{len(paths)} images from {images}")


class DropletImages(tfds.core.GeneratorBasedBuilder):
  """Real droplet images, optionally annotated."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First version."}

  def _info(self) -> tfds.core.DatasetInfo:
    c = self.builder_config.channels
    vec = tfds.features.Tensor(shape=(None,), dtype=np.float32)
    return tfds.core.DatasetInfo(
        builder=self, description=self.builder_config.description, disable_shuffling=True,
        features=tfds.features.FeaturesDict({
            "name": tfds.features.Text(),
            "image": tfds.features.Tensor(shape=(None, None, c), dtype=np.float32,
                                          encoding="zlib"),
            "annotated": tfds.features.Scalar(dtype=np.bool_),
            "x": vec, "y": vec, "r": vec}))

  def _split_generators(self, dl_manager):
    return {"test": self._generate_examples()}

  def _generate_examples(self):
    cfg = self.builder_config
    paths = find_images(cfg.images)
    names = [os.path.basename(p) for p in paths]
    rows = read_annotations(cfg.annotations, names) if cfg.annotations else {}
    for i, (path, name) in enumerate(zip(paths, names)):
      image, _ = read_image(path, cfg.channels)
      found = rows.get(name)
      xyr = (found[["x", "y", "r"]].to_numpy(np.float32) * cfg.scale if found is not None
             else np.zeros((0, 3), np.float32))
      yield i, {"name": name, "image": resize(image, cfg.scale).astype(np.float32),
                "annotated": found is not None,
                "x": xyr[:, 0], "y": xyr[:, 1], "r": xyr[:, 2]}
