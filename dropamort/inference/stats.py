"""What a lab reports from a catalog, with 90% credible intervals from posterior samples:
droplet count, number density, surface coverage and the diameter distribution (D10,
D50, D90 and the Sauter mean diameter D32), in pixels and, given the pixel size, in µm.

Each posterior sample draws every candidate droplet with its probability p and a radius
from its log-normal posterior. Definitions (per sample; the reported value is the median
over samples, the interval its 5%–95% quantiles):

- number density: droplets per mm² of the image (per megapixel without a pixel size);
- surface coverage: Σ π r² over the droplets, divided by the image area — the area
  fraction the droplets cover when they do not overlap (the hard-core model);
- Dxx: the diameter below which xx% of the droplets (by number) lie;
- D32 = Σ d³ / Σ d², the diameter of the droplet with the population's volume-to-surface
  ratio, which governs heat and mass transfer.
"""

from __future__ import annotations

import jax
import numpy as np

from dropamort.model.prior import edge_factor

LEVEL_Q = (0.05, 0.5, 0.95)


def draw(key, candidates: dict, samples: int, ratio: float = 1.0):
  """(on_SN, radius_SN): posterior samples of the candidates; radii in original pixels
  (``ratio`` = original / analysed size)."""
  p = np.asarray(candidates["p"], float)
  loc = np.asarray(candidates["r_log_loc"], float) + np.log(ratio)
  scale = np.asarray(candidates["r_log_scale"], float)
  k_on, k_r = jax.random.split(key)
  on = np.asarray(jax.random.uniform(k_on, (samples, p.size))) < p
  radius = np.exp(loc + scale * np.asarray(jax.random.normal(k_r, (samples, p.size))))
  return on, radius


def catalogs(key, candidates: dict, samples: int, *, cell: int, ratio_xy=(1.0, 1.0),
             edge=None) -> dict:
  """Posterior catalog samples of the candidates (analysed px, every level's): each a
  Bernoulli(p) droplet with its logit-normal offset in its cell and log-normal radius,
  in the original image's pixels (``ratio_xy`` = original / analysed size), radii at the
  droplets' edges when ``edge`` (``Prior.edge``) is given.

  Returns:
    {"on": (S, N) bool, "x", "y", "r": (S, N) px, "p": (N,)}.
  """
  # ``draw``'s own key: with the summary's key the presence and radii are its draws.
  on, radius = draw(key, candidates, samples, float(np.sqrt(ratio_xy[0] * ratio_xy[1])))
  k_xy = jax.random.fold_in(key, 1)
  side = cell * 2.0 ** np.asarray(candidates["level"], float)  # Cell side, analysed px.
  z = np.asarray(jax.random.normal(k_xy, on.shape + (2,)))
  loc, scale = (np.asarray(candidates[k], float).reshape(-1, 2)
                for k in ("offset_loc", "offset_scale"))
  offset = 1 / (1 + np.exp(-(loc + scale * z)))
  x = (np.asarray(candidates["cell_col"]) + offset[..., 0]) * side * ratio_xy[0]
  y = (np.asarray(candidates["cell_row"]) + offset[..., 1]) * side * ratio_xy[1]
  if edge is not None:
    radius = radius * edge_factor(radius, edge)
  return {"on": on, "x": x, "y": y, "r": radius, "p": np.asarray(candidates["p"], float)}


def per_sample(on_SN, radius_SN, *, area_px: float, pixel_size: float | None) -> dict:
  """The statistics of each sample (arrays of length S); NaN where a sample is empty."""
  unit = 1.0 if pixel_size is None else pixel_size
  d = 2 * radius_SN * unit
  count = on_SN.sum(1).astype(float)
  area = area_px * (1e-6 if pixel_size is None else (pixel_size * 1e-3) ** 2)
  out = {"count": count, "number_density": count / area,
         "coverage": (on_SN * np.pi * radius_SN**2).sum(1) / area_px}
  with np.errstate(invalid="ignore", divide="ignore"):
    out["D32"] = (on_SN * d**3).sum(1) / (on_SN * d**2).sum(1)
  for name, q in (("D10", 0.1), ("D50", 0.5), ("D90", 0.9)):
    out[name] = np.array([np.quantile(ds[o], q) if o.any() else np.nan
                          for ds, o in zip(d, on_SN)])
  return out


def interval(values) -> dict:
  """Median and central 90% interval of the finite values (None when there are none)."""
  v = np.asarray(values, float)
  v = v[np.isfinite(v)]
  if not v.size:
    return {"median": None, "ci90": None}
  lo, mid, hi = (float(x) for x in np.quantile(v, LEVEL_Q))
  return {"median": mid, "ci90": [lo, hi]}


def lab_summary(on_SN, radius_SN, *, area_px: float, pixel_size: float | None) -> dict:
  """The summary's lab figures (see the module docstring), each with its interval, from
  posterior samples ``draw`` made.

  Args:
    area_px: the original image's area in pixels.
    pixel_size: µm per original pixel, or None.
  """
  on, radius = on_SN, radius_SN
  s = per_sample(on, radius, area_px=area_px, pixel_size=pixel_size)
  unit = "um" if pixel_size is not None else "px"
  density_unit = "per_mm2" if pixel_size is not None else "per_megapixel"
  out = {f"number_density_{density_unit}": interval(s["number_density"]),
         "coverage": interval(s["coverage"]),
         f"diameter_{unit}": {k: interval(s[k]) for k in ("D10", "D50", "D90", "D32")}}
  if pixel_size is not None:  # Pixels too, for comparison with the table's columns.
    px = per_sample(on, radius, area_px=area_px, pixel_size=None)
    out["diameter_px"] = {k: interval(px[k]) for k in ("D10", "D50", "D90", "D32")}
  return out


def diameter_histograms(on_SN, radius_SN, edges, unit: float = 1.0):
  """Counts per diameter bin for every sample: (S, bins)."""
  d = 2 * radius_SN * unit
  return np.stack([np.histogram(ds[o], edges)[0] for ds, o in zip(d, on_SN)])
