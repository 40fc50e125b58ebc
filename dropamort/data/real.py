"""Real images for calibration: read once (never modified on disk), cut into crops."""

from __future__ import annotations

import numpy as np

from dropamort.config import DataConfig
from dropamort.data.images import ImageError, find_images, read_image, resize


def load_real(cfg: DataConfig, channels: int, min_size: tuple[int, int]) -> list[np.ndarray]:
  """The real images, scaled and cut to ``cfg.columns``.

  Raises:
    ImageError: no readable image, mixed channel counts, or an image smaller than
      ``min_size`` (the training crop) after scaling.
  """
  paths = find_images(cfg.real)
  images, errors, raw_channels = [], [], set()
  for path in paths:
    try:
      image, notes = read_image(path, channels)
    except ImageError as err:
      errors.append(str(err))
      continue
    raw_channels.add("grey" if any("grey" in n for n in notes) else image.shape[-1])
    image = resize(image, cfg.scale)
    w = image.shape[1]
    image = image[:, int(round(cfg.columns[0] * w)):int(round(cfg.columns[1] * w))]
    if image.shape[0] < min_size[0] or image.shape[1] < min_size[1]:
      raise ImageError(f"{path}: {image.shape[0]}×{image.shape[1]} px after data.scale="
                       f"{cfg.scale} and data.columns; the training crop is "
                       f"{min_size[0]}×{min_size[1]}")
    images.append(image)
  if not images:
    raise ImageError(f"{cfg.real}: no readable image ({'; '.join(errors[:3])})")
  if len(raw_channels) > 1:
    raise ImageError(f"{cfg.real}: images have mixed channel counts "
                     f"{sorted(map(str, raw_channels))}")
  return images


def random_crops(rng: np.random.Generator, images: list[np.ndarray], n: int, size):
  """n crops of ``size`` (h, w) at uniform positions, images chosen by area."""
  h, w = size
  area = np.array([(im.shape[0] - h + 1) * (im.shape[1] - w + 1) for im in images], float)
  which = rng.choice(len(images), size=n, p=area / area.sum())
  out = np.empty((n, h, w, images[0].shape[-1]), np.float32)
  for k, i in enumerate(which):
    y = rng.integers(0, images[i].shape[0] - h + 1)
    x = rng.integers(0, images[i].shape[1] - w + 1)
    out[k] = images[i][y:y + h, x:x + w]
  return out
