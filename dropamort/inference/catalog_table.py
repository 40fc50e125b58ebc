"""The posterior as user-facing numbers: a droplet table and a summary with intervals."""

from __future__ import annotations

import jax
import numpy as np
import pandas as pd

from dropamort.encoder.posterior import CatalogPosterior
from dropamort.schema import interval_names, sd_name


def droplet_table(posterior: CatalogPosterior, *, cell: int, threshold: float,
                  ratio_xy=(1.0, 1.0), height: int, width: int) -> pd.DataFrame:
  """One row per droplet with p > threshold, in the original image's pixel frame.

  Args:
    ratio_xy: original size / analysed size along x and y (undoes ``infer.scale``).
    height, width: the analysed (scaled) image size; droplets centred in the padding
      beyond it are dropped.
  """
  t = posterior.to_table(cell, threshold)[0]
  keep = (t["x"] < width) & (t["y"] < height)
  t = {k: v[keep] for k, v in t.items()}
  rx, ry = ratio_xy
  rr = float(np.sqrt(rx * ry))
  cols = {}
  types = t["composition"].shape[1] if t["composition"].ndim == 2 else 0
  suffixes = lambda name: (sd_name(name), *interval_names(name))
  for name, f in (("x", rx), ("y", ry), ("r", rr)):  # Lengths scale back to the original.
    cols[name] = t[name] * f
  for k in range(types):
    cols[f"composition_{k + 1}"] = t["composition"][:, k]
  cols["p"] = t["p"]
  for name, f in (("x", rx), ("y", ry), ("r", rr)):
    for col in suffixes(name):
      cols[col] = t[col] * f
  for k in range(types):
    for src, dst in zip(suffixes("composition"), suffixes(f"composition_{k + 1}")):
      cols[dst] = t[src][:, k]
  return pd.DataFrame(cols)


def summarize(key, posterior: CatalogPosterior, *, cell: int, height: int, width: int,
              ratio: float = 1.0, samples: int = 200, min_p: float = 0.01) -> dict:
  """Droplet count and radius distribution with 90% credible intervals, from posterior
  samples of (on, radius) over the cells with p >= min_p (others add < min_p each).

  Radii are reported in original-image pixels (``ratio`` = original / analysed size).
  """
  p = np.asarray(posterior.p_BYX[0])
  gy, gx = p.shape
  rows, cols = np.meshgrid(np.arange(gy), np.arange(gx), indexing="ij")
  inside = ((rows * cell) < height) & ((cols * cell) < width)  # Cell starts in the image.
  cand = (p >= min_p) & inside
  pc = p[cand]
  loc = np.asarray(posterior.logr_loc_BYX[0])[cand]
  scale = np.asarray(posterior.logr_scale_BYX[0])[cand]
  k_on, k_r = jax.random.split(key)
  on = np.asarray(jax.random.uniform(k_on, (samples, pc.size))) < pc
  radius = np.exp(loc + scale * np.asarray(jax.random.normal(k_r, (samples, pc.size))))
  radius = radius * ratio
  counts = on.sum(1)
  q = lambda v: [float(x) for x in np.quantile(v, [0.05, 0.5, 0.95])]
  per_sample = np.array([np.quantile(r[o], [0.1, 0.5, 0.9]) if o.any() else [np.nan] * 3
                         for r, o in zip(radius, on)])
  out = {"count": {"expected": float(p[inside].sum()),
                   "median": q(counts)[1], "ci90": [q(counts)[0], q(counts)[2]]},
         "radius_px": {}}
  for j, name in enumerate(("D10", "D50", "D90")):
    v = per_sample[:, j][np.isfinite(per_sample[:, j])]
    if v.size:
      qq = q(v)
      out["radius_px"][name] = {"median": qq[1], "ci90": [qq[0], qq[2]]}
  comp = 1 / (1 + np.exp(-np.asarray(posterior.comp_loc_BYXT[0])[cand]))
  if pc.sum() > 0:
    out["mean_composition"] = [float(v) for v in (pc[:, None] * comp).sum(0) / pc.sum()]
  return out
