"""Reading microscope images into float arrays in [0, 1], with clear errors.

JPEG and PNG are read with Pillow (8-bit; 16-bit greyscale PNG too; Pillow reads 16-bit
RGB PNG at 8-bit precision), TIFF with tifffile (8/16/32-bit integer or float, grey, RGB
or RGBA). Integers are divided by their type's maximum; float images must already lie in
[0, 1] and be finite.
"""

from __future__ import annotations

import glob
import os

import numpy as np
from PIL import Image, UnidentifiedImageError

from dropamort.errors import UserError

EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff")


class ImageError(UserError, ValueError):
  """An input image cannot be used; the message names the file and the problem."""


def _read_raw(path: str) -> np.ndarray:
  if path.lower().endswith((".tif", ".tiff")):
    import tifffile

    try:
      return np.asarray(tifffile.imread(path))
    except Exception as err:  # tifffile raises many types for damaged files.
      raise ImageError(f"{path}: not a readable TIFF image ({err})") from None
  try:
    with Image.open(path) as im:
      im.load()
      if im.mode in ("I;16", "I;16B", "I;16L"):
        return np.asarray(im, dtype=np.uint16)
      if im.mode not in ("L", "RGB", "RGBA", "LA", "I", "F"):
        im = im.convert("RGBA" if "A" in im.getbands() else "RGB")
      return np.asarray(im)
  except (UnidentifiedImageError, OSError, SyntaxError) as err:
    raise ImageError(f"{path}: not a readable image ({err})") from None


def _is_16bit_colour_png(path: str) -> bool:
  """PNG header: bit depth 16 with colour type RGB (2) or RGBA (6)."""
  with open(path, "rb") as f:
    head = f.read(26)
  return head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) == 26 and head[24] == 16 and (
      head[25] in (2, 6))


def to_unit(raw: np.ndarray, path: str) -> np.ndarray:
  """Integer or float pixels -> float32 in [0, 1]."""
  if np.issubdtype(raw.dtype, np.integer):
    return (raw.astype(np.float64) / np.iinfo(raw.dtype).max).astype(np.float32)
  if np.issubdtype(raw.dtype, np.floating) or raw.dtype == bool:
    out = raw.astype(np.float32)
    if not np.all(np.isfinite(out)):
      raise ImageError(f"{path}: contains NaN or infinite pixel values")
    if out.min() < 0 or out.max() > 1:
      raise ImageError(f"{path}: float pixel values must lie in [0, 1] "
                       f"(found {out.min():g} to {out.max():g})")
    return out
  raise ImageError(f"{path}: unsupported pixel type {raw.dtype}")


def read_image(path: str, channels: int) -> tuple[np.ndarray, list[str]]:
  """Reads ``path`` as (H, W, channels) float32 in [0, 1].

  Grey images are repeated to 3 channels for an RGB model; an alpha channel is dropped.

  Returns:
    (image_HWC, notes): notes say what was done to the image (for the summary).

  Raises:
    ImageError: missing, unreadable, empty, or a channel count the model cannot take.
  """
  if not os.path.exists(path):
    if os.path.islink(path):
      raise ImageError(f"{path}: a broken symbolic link (or a link loop)")
    raise ImageError(f"{path}: no such file")
  if os.path.isdir(path):
    raise ImageError(f"{path}: is a folder, not an image")
  raw = _read_raw(path)
  notes = []
  if _is_16bit_colour_png(path):
    notes.append("16-bit colour PNG read at 8-bit precision (Pillow); use TIFF for 16 bits")
  if raw.ndim == 2:
    raw = raw[..., None]
  if raw.ndim != 3 or raw.shape[0] == 0 or raw.shape[1] == 0:
    raise ImageError(f"{path}: not a 2-D image (array shape {raw.shape})")
  if raw.shape[-1] in (2, 4):
    notes.append("alpha channel dropped")
    raw = raw[..., :-1]
  image = to_unit(raw, path)
  if image.shape[-1] == 1 and channels == 3:
    image = np.repeat(image, 3, axis=-1)
    notes.append("grey image repeated to 3 channels")
  if image.shape[-1] != channels:
    raise ImageError(f"{path}: has {image.shape[-1]} channels; the model takes {channels}")
  return image, notes


def image_size(path: str) -> tuple[int, int]:
  """(height, width) of an image from its header, without decoding its pixels.

  Raises:
    ImageError: the file is not a readable image.
  """
  if path.lower().endswith((".tif", ".tiff")):
    import tifffile

    try:
      with tifffile.TiffFile(path) as tif:
        shape = tif.pages[0].shape
    except Exception as err:  # tifffile raises many types for damaged files.
      raise ImageError(f"{path}: not a readable TIFF image ({err})") from None
    return int(shape[0]), int(shape[1])
  try:
    with Image.open(path) as im:
      w, h = im.size
  except (UnidentifiedImageError, OSError, SyntaxError) as err:
    raise ImageError(f"{path}: not a readable image ({err})") from None
  return h, w


def find_images(spec: str) -> list[str]:
  """A file, a folder (its images, sorted) or a glob pattern -> image paths.

  Raises:
    ImageError: nothing matches.
  """
  if os.path.isdir(spec):
    paths = sorted(os.path.join(spec, f) for f in os.listdir(spec)
                   if f.lower().endswith(EXTENSIONS) and not f.startswith(".")
                   and not os.path.isdir(os.path.join(spec, f)))
  elif any(c in spec for c in "*?["):
    paths = sorted(p for p in glob.glob(spec, recursive=True) if os.path.isfile(p))
  else:
    paths = [spec]
  if not paths:
    raise ImageError(f"{spec}: no images found (looked for {', '.join(EXTENSIONS)})")
  return paths


def resize(image_HWC: np.ndarray, scale: float) -> np.ndarray:
  """Area-averaged resize by ``scale`` (the analysis of the example used 0.25)."""
  if scale == 1.0:
    return image_HWC
  h, w = image_HWC.shape[:2]
  nh, nw = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
  chans = [np.asarray(Image.fromarray(image_HWC[..., c], mode="F").resize(
      (nw, nh), Image.BOX if scale < 1 else Image.BILINEAR)) for c in range(image_HWC.shape[-1])]
  return np.stack(chans, -1).astype(np.float32)
