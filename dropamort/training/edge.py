"""Where droplets' edges lie in the image, relative to the radii the model reads.

The radius the wake–sleep loop reads is the decoder's: with the outline search
(``training.outline``) the disc that best reconstructs the images, which on a microscope
whose droplets wear a bright halo takes the halo in (1.25 × the labels on the
condensation set); without it, whatever convention calibration started from. Neither is
where a person, or an edge detector, puts a droplet's boundary. The reported radius is
put at the droplet's *edge*: the distance from the read centre at which the image's
angle-averaged radial profile changes fastest in the direction of the droplet's contrast
(a blurred step's half-way point; the edge of image analysis). It is measured per
droplet (``steepest``) and pooled over many droplets (``edge_map``): one droplet's profile
is noisy (its neighbours, highlights), medians over thousands are not. The map from read
to edge radius is affine, a · r + b: blur and halo add about the same number of pixels
to every droplet, so a single ratio does not fit (on the condensation set after the
outline search, the edge lies at 0.55 × the read radius of 4 px reads and 0.75 × that of
20–60 px ones; a · r + b with b = -1.3 px fits both).

The measurement needs the images alone, never labels.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from dropamort.model.prior import IDENTITY_EDGE

# Profile radii, as fractions of the read radius: wide enough for reads from 0.6 × to
# 1.9 × the edge; the inner and outer bands set the droplet's contrast direction.
T = np.linspace(0.5, 1.6, 45)
INNER, OUTER = T <= 0.8, T >= 1.3
ANGLES = 48
SMOOTH_PX = 0.7  # Gaussian pre-smoothing (px): pixel noise and JPEG blocks.
R_MIN_PX = 3.0  # Smaller reads: the profile is all blur.
BIN_RATIO, BIN_MIN = 1.5, 30  # The edge map's radius bins: width ratio, fewest droplets.


def profiles(image: np.ndarray, x, y, r) -> np.ndarray:
  """(N, len(T), C): the image's mean over ANGLES directions at distance T · r from each
  centre (bilinear, on the image smoothed by SMOOTH_PX)."""
  img = np.asarray(image, np.float32)
  img = img[..., None] if img.ndim == 2 else img
  x, y, r = (np.asarray(v, np.float64) for v in (x, y, r))
  theta = np.linspace(0, 2 * np.pi, ANGLES, endpoint=False)
  dist = T[None, :, None] * r[:, None, None]
  # Pixel centres sit at integer + 0.5 in catalog coordinates.
  px = x[:, None, None] + dist * np.cos(theta) - 0.5
  py = y[:, None, None] + dist * np.sin(theta) - 0.5
  out = np.empty((len(x), len(T), img.shape[-1]), np.float32)
  for c in range(img.shape[-1]):
    smooth = ndimage.gaussian_filter(img[..., c], SMOOTH_PX)
    v = ndimage.map_coordinates(smooth, [py.ravel(), px.ravel()], order=1, mode="nearest")
    out[..., c] = v.reshape(px.shape).mean(-1)
  return out


def steepest(image: np.ndarray, x, y, r) -> np.ndarray:
  """Per droplet, the fraction t of its read radius at which the image's radial profile
  is steepest along the droplet's contrast (outer band minus inner band); NaN where the
  profile leaves the image, the read is under R_MIN_PX or the droplet has no contrast."""
  x, y, r = (np.asarray(v, np.float64) for v in (x, y, r))
  h, w = np.shape(image)[:2]
  reach = T[-1] * r
  ok = (r >= R_MIN_PX) & (x - reach >= 0) & (x + reach <= w) & (y - reach >= 0) & (
      y + reach <= h)
  out = np.full(len(x), np.nan)
  if not ok.any():
    return out
  prof = profiles(image, x[ok], y[ok], r[ok])
  direction = prof[:, OUTER].mean(1) - prof[:, INNER].mean(1)  # (N, C)
  norm = np.linalg.norm(direction, axis=-1)
  slope = np.einsum("ntc,nc->nt", np.gradient(prof, T, axis=1), direction)
  t = T[np.argmax(slope, axis=1)]
  out[np.flatnonzero(ok)] = np.where(norm > 0, t, np.nan)
  return out


def edge_map(images, tables) -> tuple[tuple[float, float, float], int]:
  """((a, b, r0), droplets it rests on): the edge radius as a map of the read radius,
  a · r + b px for r >= r0 = R_MIN_PX and a · r + b · r / r0 below (a constant number of
  pixels of blur and halo at every size, no negative radii), fitted to the droplets of
  ``tables`` (x, y, r in the pixels of ``images``).

  Each droplet's edge radius is ``steepest`` × r; the fit is weighted least squares
  through the medians of r and of the edge radius in bins of r (ratio BIN_RATIO, at least
  BIN_MIN droplets each; weight the bin's count), robust to the single droplets whose
  profile a neighbour spoils. With one such bin, or a map that would make r0 smaller than
  0.1 × itself, the median ratio alone (b = 0); with fewer than BIN_MIN droplets measured,
  the identity ``IDENTITY_EDGE``.
  """
  r, t = [], []
  for image, tab in zip(images, tables):
    r.append(np.asarray(tab["r"], np.float64))
    t.append(steepest(image, tab["x"], tab["y"], tab["r"]))
  r, t = (np.concatenate(v) if v else np.zeros(0) for v in (r, t))
  ok = np.isfinite(t)
  r, e = r[ok], (t * r)[ok]
  if r.size < BIN_MIN:  # Too few to say: a droplet's profile alone is noisy.
    return IDENTITY_EDGE, int(r.size)
  bins = []
  lo = R_MIN_PX
  while lo <= r.max():
    k = (r >= lo) & (r < lo * BIN_RATIO)
    if k.sum() >= BIN_MIN:
      bins.append((np.median(r[k]), np.median(e[k]), k.sum()))
    lo *= BIN_RATIO
  a, b = float(np.median(e / r)), 0.0
  if len(bins) >= 2:
    rb, eb, n = np.asarray(bins).T
    w = np.sqrt(n)
    fa, fb = np.linalg.lstsq(np.stack([rb, np.ones_like(rb)], 1) * w[:, None], eb * w,
                             rcond=None)[0]
    if fa > 0 and fa * R_MIN_PX + fb >= 0.1 * R_MIN_PX:
      a, b = float(fa), float(fb)
  return (a, b, R_MIN_PX), int(r.size)
