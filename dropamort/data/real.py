"""Real images for calibration: read once (never modified on disk), split into the images
the wake stage fits and held-out ones it is judged on, and cut into crops at positions
drawn from an explicit key."""

from __future__ import annotations

import jax
import numpy as np

from dropamort.config import DataConfig
from dropamort.data.images import ImageError, find_images, read_image, resize


def calibration_paths(cfg: DataConfig) -> list[str]:
  """The image files calibration reads: those of ``cfg.real`` (sorted by name), or when
  there are more than ``cfg.max_images``, that many evenly spaced among them (the first
  and the last included)."""
  paths = find_images(cfg.real)
  n, m = len(paths), cfg.max_images
  if m is None or n <= m:
    return paths
  return [paths[0]] if m == 1 else [paths[round(i * (n - 1) / (m - 1))] for i in range(m)]


def held_out_paths(cfg: DataConfig, holdout: float) -> list[str]:
  """The calibration images held out of the wake fit when every one of them is readable
  (``split_holdout`` of ``read_real``'s images; none when a single image is split by
  columns instead)."""
  paths = calibration_paths(cfg)
  return [paths[i] for i in holdout_indices(len(paths), holdout)] if len(paths) >= 2 else []


def load_real(cfg: DataConfig, channels: int, min_size: tuple[int, int]) -> list[np.ndarray]:
  """The calibration images (``calibration_paths``), scaled and cut to ``cfg.columns``
  (``read_real`` without the paths)."""
  return [image for _, image in read_real(cfg, channels, min_size)]


def read_real(cfg: DataConfig, channels: int,
              min_size: tuple[int, int]) -> list[tuple[str, np.ndarray]]:
  """(path, image) of each calibration image (``calibration_paths``) that could be read,
  scaled and cut to ``cfg.columns``; unreadable files are left out.

  Raises:
    ImageError: no readable image, mixed channel counts, or an image smaller than
      ``min_size`` (the training crop) after scaling.
  """
  paths = calibration_paths(cfg)
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
    images.append((path, image))
  if not images:
    raise ImageError(f"{cfg.real}: no readable image ({'; '.join(errors[:3])})")
  if len(raw_channels) > 1:
    raise ImageError(f"{cfg.real}: images have mixed channel counts "
                     f"{sorted(map(str, raw_channels))}")
  return images


def holdout_indices(n: int, fraction: float) -> list[int]:
  """Which of n >= 2 images are held out: every k-th, k = round(1 / fraction), at least
  one (the last)."""
  k = max(2, int(round(1 / fraction)))
  return [i for i in range(n) if i % k == k - 1] or [n - 1]


def split_holdout(images: list[np.ndarray], fraction: float, min_width: int):
  """(fitted, held_out) images. With several images every k-th one is held out
  (k = round(1 / fraction), at least one image); a single image keeps its right
  ``fraction`` of columns apart (the fitted part stays at least ``min_width`` wide).

  Raises:
    ImageError: a single image too narrow to split.
  """
  if len(images) >= 2:
    held = holdout_indices(len(images), fraction)
    return ([im for i, im in enumerate(images) if i not in held],
            [images[i] for i in held])
  (image,) = images
  w = image.shape[1]
  cut = min(w - max(1, int(round(fraction * w))), w)
  if cut < min_width or cut >= w:
    raise ImageError(f"one real image {image.shape[0]}×{w} px is too narrow to hold out "
                     f"{fraction:.0%} of its width and keep a {min_width}-px crop; give "
                     f"more images or a larger data.scale")
  return [image[:, :cut]], [image[:, cut:]]


def crop_positions(key, grids: list[tuple[int, int]], n: int, size: int, chance=None):
  """n crop positions of ``size`` × ``size`` cells on images whose whole-cell grids are
  ``grids``: images chosen in proportion to their number of positions (times ``chance``,
  one factor per image, when given), positions uniform. Drawn from ``key`` alone, so a
  resumed run draws the same crops.

  Returns:
    (which, row, col): numpy arrays of image indices and top-left cells.
  """
  counts = np.array([(gy - size + 1) * (gx - size + 1) for gy, gx in grids], float)
  if np.any(counts <= 0):
    raise ValueError(f"every image needs at least {size}×{size} whole cells")
  if chance is not None:
    counts = counts * np.asarray(chance, float)
  k_which, k_pos = jax.random.split(key)
  which = np.asarray(jax.random.choice(k_which, len(grids), (n,), p=counts / counts.sum()))
  u = np.asarray(jax.random.uniform(k_pos, (n, 2)))
  span = np.array([(gy - size + 1, gx - size + 1) for gy, gx in grids])[which]
  rc = np.minimum((u * span).astype(int), span - 1)
  return which, rc[:, 0], rc[:, 1]
