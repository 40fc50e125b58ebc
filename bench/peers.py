"""Classical droplet detectors to compare dropamort with on real images ("peers"):
py-droplets, trackpy, scikit-image blob_log and OpenCV Hough circles, each with a small
parameter grid and a tuner that picks the grid point of highest pooled F1.

    sys.path.insert(0, os.path.dirname(__file__)); import peers
    params, f1 = peers.tune("trackpy", images, labels, score_fn)
    table = peers.detect("trackpy", image_rgb, params)

Every detector takes an RGB float image in [0, 1] (H×W×3) and returns {"x", "y", "r"}
(float arrays, pixels, pixel (row i, col j) centred at (j + 0.5, i + 0.5)). Droplets are
dark on a lighter background, so each detector runs on the inverted grey image
1 − mean(RGB), as elsewhere in bench/. The grids start at the settings of
shared/data/condensation/README.md and vary the one or two parameters that matter most.

Optional extra [peers], the newest that install on Python 3.11 here:
py-droplets==0.28.0 (with py-pde==0.59.0, numba==0.68.1, llvmlite==0.50.0,
h5py==3.16.0), trackpy==0.7 (with looseversion==1.3.0), opencv-python-headless==5.0.0.93.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import ndimage

PEERS = ("py_droplets", "trackpy", "blob_log", "opencv_hough")


def empty_table() -> dict:
  return {k: np.zeros(0) for k in ("x", "y", "r")}


def xyr_table(x, y, r) -> dict:
  return {"x": np.asarray(x, float).ravel(), "y": np.asarray(y, float).ravel(),
          "r": np.asarray(r, float).ravel()}


def inverted_grey(image_rgb: np.ndarray) -> np.ndarray:
  """1 − mean(RGB) as float32: droplets become bright blobs on a dark background."""
  return (1.0 - np.asarray(image_rgb, np.float32).mean(-1)).astype(np.float32)


def _grey_uint8(grey: np.ndarray) -> np.ndarray:
  return np.round(np.clip(grey, 0.0, 1.0) * 255.0).astype(np.uint8)


# --- py-droplets ---------------------------------------------------------------------

def droplet_field(image_rgb: np.ndarray, params: dict) -> np.ndarray:
  """The field py-droplets thresholds: inverted grey, rescaled by ``scale``, Gaussian
  blur ``blur`` px, minus a Gaussian background of ``background`` px (both at the
  working scale), mapped to [0, 1] by its 1st and 99th percentiles. Percentiles rather
  than min/max, so that a few specular highlights do not set the scale."""
  from skimage.transform import rescale

  grey = inverted_grey(image_rgb).astype(np.float64)
  if params["scale"] != 1:
    grey = rescale(grey, params["scale"], anti_aliasing=True)
  grey = ndimage.gaussian_filter(grey, params["blur"])
  grey = grey - ndimage.gaussian_filter(grey, params["background"])
  lo, hi = np.percentile(grey, [1.0, 99.0])
  if not hi > lo:  # a flat image has no droplets
    return np.zeros_like(grey)
  return np.clip((grey - lo) / (hi - lo), 0.0, 1.0)


def detect_py_droplets(image_rgb: np.ndarray, params: dict) -> dict:
  """py-droplets ``locate_droplets`` on ``droplet_field``: connected regions above
  ``threshold``, their centres of mass and the radii of discs of the same areas. The
  regions are the darkest cores of the droplets, so radii come out small."""
  from droplets.image_analysis import locate_droplets
  from pde import CartesianGrid, ScalarField

  field = droplet_field(image_rgb, params)
  h, w = field.shape
  # Grid axis 0 = rows: cell i spans [i, i + 1], so positions come back as (y, x) in
  # the pixel-centre convention of the working scale.
  cells = CartesianGrid([[0, h], [0, w]], [h, w])
  emulsion = locate_droplets(ScalarField(cells, field), threshold=params["threshold"])
  if len(emulsion) == 0:
    return empty_table()
  yx = np.array([d.position for d in emulsion], float)
  r = np.array([d.radius for d in emulsion], float)
  # rescale() rounds the shape; pixel-centre coordinates scale by the actual ratios.
  sy, sx = h / image_rgb.shape[0], w / image_rgb.shape[1]
  return xyr_table(yx[:, 1] / sx, yx[:, 0] / sy, r / math.sqrt(sx * sy))


# --- trackpy -------------------------------------------------------------------------

def detect_trackpy(image_rgb: np.ndarray, params: dict) -> dict:
  """trackpy ``locate`` (Crocker–Grier) on the inverted grey image in 8-bit units.

  ``minmass_per_px`` × the area of trackpy's circular mask is the minimum mass (so
  10 means a mean band-passed brightness of 10 grey levels over the mask). The radius
  is √2 × ``size``: trackpy's size is the radius of gyration of the band-passed
  brightness in the mask, and a uniform disc of radius R has R / √2.
  """
  import trackpy
  from trackpy.masks import binary_mask

  diameter = int(params["diameter"])
  if diameter % 2 == 0:
    raise ValueError(f"trackpy's diameter must be odd, got {diameter}")
  grey = _grey_uint8(inverted_grey(image_rgb))
  if min(grey.shape) < diameter:  # trackpy keeps features a radius from the edges
    return empty_table()
  minmass = params["minmass_per_px"] * float(binary_mask(diameter // 2, 2).sum())
  with warnings.catch_warnings():
    # trackpy warns (UserWarning) when it finds nothing (blank image, no maxima, all in
    # the margins, none above minmass): an empty table says so.
    warnings.filterwarnings(
        "ignore", category=UserWarning,
        message="(No maxima survived|Image is completely black|Image contains no local "
                "maxima|All local maxima were in the margins)")
    # trackpy 0.7 calls DataFrame.drop/reset_index(inplace=True), deprecated in pandas
    # 3.1 (Pandas4Warning, a DeprecationWarning); the call still works as documented.
    warnings.filterwarnings("ignore", message="The inplace keyword",
                            category=DeprecationWarning)
    found = trackpy.locate(grey, diameter, minmass=minmass,
                           separation=params["separation"])
  if len(found) == 0:
    return empty_table()
  # trackpy's origin is the centre of pixel (0, 0).
  return xyr_table(found["x"].to_numpy() + 0.5, found["y"].to_numpy() + 0.5,
                   math.sqrt(2.0) * found["size"].to_numpy())


# --- scikit-image blob_log -----------------------------------------------------------

def detect_blob_log(image_rgb: np.ndarray, params: dict) -> dict:
  """scikit-image ``blob_log`` on the inverted grey image, sigmas spanning radii
  ``r_min``..``r_max`` px in ``num_sigma`` linear steps; r = √2 σ."""
  from skimage.feature import blob_log

  s2 = math.sqrt(2.0)
  blobs = blob_log(inverted_grey(image_rgb), min_sigma=params["r_min"] / s2,
                   max_sigma=params["r_max"] / s2, num_sigma=params["num_sigma"],
                   threshold=params["threshold"])
  if len(blobs) == 0:
    return empty_table()
  # blob_log gives (row, col, sigma) in array indices.
  return xyr_table(blobs[:, 1] + 0.5, blobs[:, 0] + 0.5, blobs[:, 2] * s2)


# --- OpenCV Hough circles ------------------------------------------------------------

def detect_opencv_hough(image_rgb: np.ndarray, params: dict) -> dict:
  """OpenCV ``HoughCircles`` (HOUGH_GRADIENT) on the 8-bit grey image after a Gaussian
  blur of ``blur`` px. ``param1`` is the upper Canny threshold, ``param2`` the
  accumulator threshold (lower finds more circles); radii ``r_min``..``r_max`` px."""
  import cv2

  # Edges do not care about polarity; inverting keeps one grey image for all peers.
  grey = cv2.GaussianBlur(_grey_uint8(inverted_grey(image_rgb)), (0, 0), params["blur"])
  circles = cv2.HoughCircles(grey, cv2.HOUGH_GRADIENT, dp=1, minDist=params["min_dist"],
                             param1=params["param1"], param2=params["param2"],
                             minRadius=int(params["r_min"]), maxRadius=int(params["r_max"]))
  if circles is None:
    return empty_table()
  c = circles.reshape(-1, circles.shape[-1])
  # OpenCV puts pixel centres at integer coordinates.
  return xyr_table(c[:, 0] + 0.5, c[:, 1] + 0.5, c[:, 2])


# --- grids, dispatch, tuning ---------------------------------------------------------

_DETECTORS = {"py_droplets": detect_py_droplets, "trackpy": detect_trackpy,
              "blob_log": detect_blob_log, "opencv_hough": detect_opencv_hough}


def grid(name: str) -> list[dict]:
  """Parameter grid of peer ``name`` (≤ 12 points, a fresh list each call).

  Around the data README's settings. py-droplets: its threshold 0.6 joins the packed
  droplets into one region on our percentile-normalised field, so thresholds span
  0.7–0.85, with the background scale. trackpy: diameter (separation ≈ 2/3 of it, as
  21/14) and minmass. blob_log: threshold and the number of sigmas (10 linear steps over
  r = 3–60 px are 4.4 px apart, coarser than the small droplets). Hough: blur, Canny
  and accumulator thresholds.
  """
  if name == "py_droplets":
    return [{"scale": 0.5, "blur": 0.75, "background": bg, "threshold": t}
            for bg in (2.5, 5.0, 10.0) for t in (0.7, 0.75, 0.8, 0.85)]
  if name == "trackpy":
    return [{"diameter": d, "separation": sep, "minmass_per_px": m}
            for d, sep in ((15, 10), (21, 14), (25, 16)) for m in (5.0, 10.0, 15.0, 20.0)]
  if name == "blob_log":
    return [{"r_min": 3.0, "r_max": 60.0, "num_sigma": n, "threshold": t}
            for n in (10, 20, 30) for t in (0.08, 0.1, 0.12, 0.14)]
  if name == "opencv_hough":
    return [{"blur": b, "param1": p1, "param2": p2, "min_dist": 8.0, "r_min": 4, "r_max": 30}
            for b in (1.0, 1.5) for p1 in (50.0, 100.0) for p2 in (15.0, 20.0, 25.0)]
  raise ValueError(f"unknown peer {name!r}; one of {PEERS}")


def detect(name: str, image_rgb: np.ndarray, params: dict) -> dict:
  """Runs peer ``name`` on one RGB image in [0, 1]; returns {"x", "y", "r"}."""
  if name not in _DETECTORS:
    raise ValueError(f"unknown peer {name!r}; one of {PEERS}")
  return _DETECTORS[name](image_rgb, params)


def tune(name: str, images, labels, score_fn, *, params_grid: list[dict] | None = None):
  """The grid point with the highest pooled F1 on ``images`` against ``labels``.

  Args:
    name: one of ``PEERS``.
    images, labels: RGB images in [0, 1] and their true tables, in the same order.
    score_fn: ``score_fn(true_tables, pred_tables) -> dict`` with key ``"f1"`` (pooled).
    params_grid: the grid to search; ``grid(name)`` by default.

  Returns:
    (best_params, best_f1); the first grid point wins ties, and a NaN F1 never wins.
  """
  best, best_f1 = None, -math.inf
  for params in (grid(name) if params_grid is None else params_grid):
    f1 = float(score_fn(labels, [detect(name, im, params) for im in images])["f1"])
    if f1 > best_f1:  # False for NaN
      best, best_f1 = params, f1
  if best is None:
    raise ValueError(f"no grid point of {name!r} had a defined F1")
  return best, best_f1
