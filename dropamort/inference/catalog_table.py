"""The posterior as user-facing numbers: a droplet table and a summary with intervals."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dropamort.model.prior import edge_factor, edge_slope, is_identity
from dropamort.pyramid import point_mask
from dropamort.schema import interval_names, sd_name


def at_edge(cands: dict, edge, ratio: float = 1.0) -> dict:
  """The candidates with their radius posteriors pushed through the droplets' edge map
  (``Prior.edge``, fitted in original image px; ``ratio`` = original / analysed size):
  r and its interval bounds each mapped (the map is increasing, so quantiles map to
  quantiles), the sd times the map's slope, ``r_log_loc`` the log of the mapped median.
  For the radii reported, never for rendering (the decoder draws the read radii)."""
  if is_identity(edge) or not len(cands["r"]):
    return cands
  to_edge = lambda v: np.asarray(v, float) * edge_factor(np.asarray(v, float) * ratio, edge)
  out = dict(cands)
  for k, v in cands.items():
    if k == "r" or k.startswith("r_q"):
      out[k] = to_edge(v)
  out["r_sd"] = np.asarray(cands["r_sd"]) * edge_slope(np.asarray(cands["r"]) * ratio, edge)
  out["r_log_loc"] = np.log(out["r"])
  return out


def droplet_table(table: dict, *, threshold: float, ratio_xy=(1.0, 1.0),
                  pixel_size: float | None = None) -> pd.DataFrame:
  """The user-facing table (schema of ``dropamort.schema``): one row per droplet of the
  point catalog (p > threshold, not a duplicate: ``pyramid.point_mask``), lengths scaled
  by ``ratio_xy`` (original / analysed size) back to the original image's pixels, the
  composition split into columns; with ``pixel_size`` (µm per original pixel) the lengths
  in µm too (``x_um``, ``r_um_sd``, ...). Radii as given: ``at_edge`` first for the
  droplets' edges."""
  keep = point_mask(table, threshold)
  t = {k: np.asarray(v)[keep] for k, v in table.items()}
  rx, ry = ratio_xy
  rr = float(np.sqrt(rx * ry))
  cols = {}
  comp = t["composition"]  # (N, T)
  types = comp.shape[1]
  suffixes = lambda name: (sd_name(name), *interval_names(name))
  for name, f in (("x", rx), ("y", ry), ("r", rr)):  # Lengths scale back to the original.
    cols[name] = t[name] * f
  for k in range(types):
    cols[f"composition_{k + 1}"] = comp[:, k]
  cols["p"] = t["p"]
  for name, f in (("x", rx), ("y", ry), ("r", rr)):
    for col in suffixes(name):
      cols[col] = t[col] * f
  for k in range(types):
    for src, dst in zip(suffixes("composition"), suffixes(f"composition_{k + 1}")):
      cols[dst] = t[src][:, k]
  if pixel_size is not None:
    for name in ("x", "y", "r"):
      for src, dst in zip((name, *suffixes(name)), (f"{name}_um", *suffixes(f"{name}_um"))):
        cols[dst] = cols[src] * pixel_size
  return pd.DataFrame(cols)


def summarize(candidates: dict, on_SN, radius_SN) -> dict:
  """Droplet count and radius distribution with 90% credible intervals, from posterior
  samples (``stats.draw``: each candidate a Bernoulli(p) droplet with a log-normal radius,
  in original-image pixels; candidates below the floor p add less than it each).
  """
  pc = np.asarray(candidates["p"], float)
  on, radius = on_SN, radius_SN
  samples = len(on)
  counts = on.sum(1)
  q = lambda v: [float(x) for x in np.quantile(v, [0.05, 0.5, 0.95])]
  per_sample = np.array([np.quantile(r[o], [0.1, 0.5, 0.9]) if o.any() else [np.nan] * 3
                         for r, o in zip(radius, on)]).reshape(samples, 3)
  out = {"count": {"expected": float(pc.sum()),
                   "median": q(counts)[1], "ci90": [q(counts)[0], q(counts)[2]]},
         "radius_px": {}}
  for j, name in enumerate(("D10", "D50", "D90")):
    v = per_sample[:, j][np.isfinite(per_sample[:, j])]
    if v.size:
      qq = q(v)
      out["radius_px"][name] = {"median": qq[1], "ci90": [qq[0], qq[2]]}
  comp = np.asarray(candidates["composition"])
  if pc.sum() > 0:
    out["mean_composition"] = [float(v) for v in (pc[:, None] * comp).sum(0) / pc.sum()]
  return out
