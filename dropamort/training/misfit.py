"""How wide the posterior must be on real images: a residual bootstrap.

The encoder learns its posterior widths on simulations whose noise is white with the
fitted sigma. On a real microscope the reconstruction misses structure (rims, highlights,
uneven background) and the residual is neither white nor independent of position, so the
encoder's intervals are too narrow for real images (on the condensation set, 90%
intervals of x covered a third of the labelled centres).

The bootstrap measures how far the catalog moves under the real residual: each held-out
image is rebuilt as its reconstruction plus its own residual moved by a random shift of a
quarter to three quarters of the image (the residual keeps its texture and amplitude but
no longer lines up with the droplets it came from), read again, and every droplet of the
first read that is found again gives z = (re-read − first read) / (re-read sd), for x, y
and log r. The posterior's scale of each is then widened by the factor that puts 90% of
the |z| inside the 90% interval (``max(1, q90 |z| / 1.645)``): an encoder that is right
about its noise gives factors near 1 (white noise at the model's sigma in place of the
residual does: 0.92 / 0.96 / 1.03 on the condensation set), and nothing is ever narrowed.

What it cannot see: errors the residual does not move, such as a radius convention that
differs from the labeller's (the droplet's body vs its rim); it widens, it does not
re-centre.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy.spatial import cKDTree

from dropamort.schema import LEVEL, interval_names
from dropamort.encoder.posterior import central_z

SHIFTS = 2  # Re-reads per image, each with its own random shift of the residual.


def shifted(recon_HWC: np.ndarray, image_HWC: np.ndarray, rng: np.random.Generator):
  """The reconstruction plus the image's residual rolled by a random shift of 1/4 to 3/4
  of each side (clipped to [0, 1])."""
  h, w = image_HWC.shape[:2]
  shift = (int(rng.integers(h // 4, 3 * h // 4 + 1)), int(rng.integers(w // 4, 3 * w // 4 + 1)))
  resid = np.roll(image_HWC - recon_HWC, shift, axis=(0, 1))
  return np.clip(recon_HWC + resid, 0.0, 1.0).astype(np.float32)


def interval_z(first: dict, again: dict, level: float = LEVEL) -> dict[str, np.ndarray]:
  """z of x, y and log r for every droplet of ``first`` found again in ``again`` (the
  nearest centre, within half the first radius): the difference over the re-read's sd,
  taken from its central ``level`` interval. Tables: x, y, r and their interval columns."""
  out = {q: np.zeros(0) for q in ("x", "y", "r")}
  if len(first["x"]) == 0 or len(again["x"]) == 0:
    return out
  d, j = cKDTree(np.stack([again["x"], again["y"]], 1)).query(
      np.stack([first["x"], first["y"]], 1))
  ok = d < 0.5 * np.asarray(first["r"])
  j = j[ok]
  z = central_z(level)
  for q in out:
    lo, hi = interval_names(q, level)
    f = (lambda v: np.log(np.asarray(v, float))) if q == "r" else (lambda v: np.asarray(v, float))
    sd = (f(again[hi])[j] - f(again[lo])[j]) / (2 * z)
    out[q] = (f(again[q])[j] - f(first[q])[ok]) / np.maximum(sd, 1e-12)
  return out


def widen_factors(zs: list[dict], coverage: float = LEVEL) -> np.ndarray:
  """(3,) factors for x, y, log r: ``max(1, quantile(|z|, coverage) / z_coverage)``, so that
  the widened central ``coverage`` interval holds that share of the bootstrap's |z|
  (1 where no droplet was found again)."""
  out = []
  for q in ("x", "y", "r"):
    z = np.concatenate([np.abs(t[q]) for t in zs]) if zs else np.zeros(0)
    out.append(1.0 if len(z) == 0 else max(1.0, float(np.quantile(z, coverage)) /
                                            central_z(coverage)))
  return np.asarray(out, np.float32)


def bootstrap_widen(read: Callable[[np.ndarray], tuple[dict, np.ndarray]],
                    images: list[np.ndarray], firsts: list[tuple[dict, np.ndarray]],
                    rng: np.random.Generator, shifts: int = SHIFTS) -> tuple[np.ndarray, int]:
  """The widening factors of a reader on some real images (see the module docstring).

  Args:
    read: ``read(image) -> (table, reconstruction)``, the confident droplets (x, y, r and
      their intervals, unwidened) and the noise-free render of them.
    images: held-out real images (H, W, C) in [0, 1].
    firsts: ``read`` of each image, already made.
    rng: the bootstrap's shifts.

  Returns:
    (factors (3,), droplets found again).
  """
  zs = []
  for image, (first, recon) in zip(images, firsts):
    for _ in range(shifts):
      zs.append(interval_z(first, read(shifted(recon, image, rng))[0]))
  return widen_factors(zs), int(sum(len(t["x"]) for t in zs))
