"""bench/real_reconstruction.py's pixel regions: distance to the nearest droplet over its
radius, against a brute-force reference."""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, "bench"))
from real_reconstruction import nearest_d  # noqa: E402


def test_nearest_normalized_distance_matches_brute_force():
  rng = np.random.default_rng(0)
  h, w = 40, 56
  x, y = rng.uniform(-5, w + 5, 25), rng.uniform(-5, h + 5, 25)
  r = rng.uniform(1.0, 9.0, 25)
  yy, xx = np.mgrid[0:h, 0:w] + 0.5
  all_d = np.hypot(xx[..., None] - x, yy[..., None] - y) / r
  want = np.where(all_d < 2, all_d, np.inf).min(-1)
  got = nearest_d((h, w), x, y, r)
  # Within 2 r of some droplet the nearest one is found; farther, inf.
  np.testing.assert_allclose(np.where(got < 2, got, np.inf), want, rtol=1e-12)
  assert (got[want == np.inf] >= 2).all()
