"""The residual bootstrap that widens the posterior on real images."""

import numpy as np
import pytest
from scipy import ndimage

from dropamort.training.misfit import bootstrap_widen, interval_z, shifted, widen_factors

Z90 = 1.6448536269514722


def _table(x, y, r, sd_xy, sd_logr):
  x, y, r = (np.asarray(v, float) for v in (x, y, r))
  return {"x": x, "y": y, "r": r, "x_q05": x - Z90 * sd_xy, "x_q95": x + Z90 * sd_xy,
          "y_q05": y - Z90 * sd_xy, "y_q95": y + Z90 * sd_xy,
          "r_q05": r * np.exp(-Z90 * sd_logr), "r_q95": r * np.exp(Z90 * sd_logr)}


def test_interval_z_by_hand():
  first = _table([10.0, 50.0], [10.0, 50.0], [4.0, 4.0], 0.5, 0.1)
  # The first droplet is found 1 px right and 0.5 px up, its radius e^0.2 larger; the
  # second has no re-read within half its radius (2 px).
  again = _table([11.0, 53.0], [9.5, 50.0], [4.0 * np.exp(0.2), 4.0], 0.5, 0.1)
  z = interval_z(first, again)
  np.testing.assert_allclose(z["x"], [2.0])
  np.testing.assert_allclose(z["y"], [-1.0])
  np.testing.assert_allclose(z["r"], [2.0])


def test_widen_factors_put_ninety_percent_inside_and_never_narrow():
  rng = np.random.default_rng(0)
  z = {"x": 3.0 * rng.standard_normal(200_000), "y": 0.5 * rng.standard_normal(200_000),
       "r": 1.0 * rng.standard_normal(200_000)}
  k = widen_factors([z])
  np.testing.assert_allclose(k, [3.0, 1.0, 1.0], rtol=0.02)
  assert widen_factors([{q: np.zeros(0) for q in "xyr"}]).tolist() == [1.0, 1.0, 1.0]


def test_shifted_keeps_the_residual_and_moves_it():
  rng = np.random.default_rng(1)
  recon = np.full((40, 60, 1), 0.5, np.float32)
  resid = 0.1 * rng.standard_normal((40, 60, 1)).astype(np.float32)
  out = shifted(recon, recon + resid, rng) - recon
  assert not np.allclose(out, resid)
  # Some roll of the residual, no more: the same values, moved by a whole shift.
  hits = [(a, b) for a in range(40) for b in range(60)
          if np.allclose(np.roll(resid, (a, b), (0, 1)), out, atol=1e-6)]
  assert len(hits) == 1 and 10 <= hits[0][0] <= 30 and 15 <= hits[0][1] <= 45


PATCH, SIGMA = 5, 0.05


def _reader(sites):
  """A toy reader: each droplet's x is its site plus 4 × (the mean of the 5 × 5 patch at
  the site - 0.5), its reported sd what that is under white noise of SIGMA; its
  reconstruction is 0.5 with each patch at its mean (so it re-reads as the same x)."""

  def read(image):
    n = len(sites)
    patch = lambda a, y, x: a[y - 2:y + 3, x - 2:x + 3, 0]
    dx = np.array([patch(image, y, x).mean() - 0.5 for y, x in sites])
    recon = np.full(image.shape, 0.5, np.float32)
    for (y, x), d in zip(sites, dx):
      patch(recon, y, x)[...] = 0.5 + d
    table = _table(sites[:, 1] + 4 * dx, sites[:, 0] + 0.0, np.full(n, 6.0),
                   4 * SIGMA / PATCH, 0.1)
    return table, recon

  return read


@pytest.mark.parametrize("blur", [0.0, 1.5])
def test_bootstrap_matches_the_spread_of_the_estimate_under_the_noise(blur):
  rng = np.random.default_rng(2)
  grid = np.arange(12, 116, 13)
  sites = np.stack(np.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)

  def noise(shape):
    e = rng.standard_normal(shape)
    if blur:
      e = ndimage.gaussian_filter(e, blur, mode="wrap")
    return (SIGMA * e / e.std()).astype(np.float32)

  images = [0.5 + noise((128, 128, 1)) for _ in range(6)]
  read = _reader(sites)
  k, found = bootstrap_widen(read, images, [read(im) for im in images], rng, shifts=4)
  assert found == 6 * 4 * len(sites)
  # Independent reference: the spread of the toy estimate under fresh noise of the same
  # kind, over the sd the reader reports.
  dx = np.concatenate([read(0.5 + noise((128, 128, 1)))[0]["x"] - sites[:, 1]
                       for _ in range(40)])
  want = max(1.0, float(np.quantile(np.abs(dx), 0.9)) / Z90 / (4 * SIGMA / PATCH))
  np.testing.assert_allclose(k[0], want, rtol=0.12)
  if blur:
    assert k[0] > 2.0  # Correlated noise: the white-noise sd is far too small.
  else:
    assert k[0] < 1.15
  assert k[1] == 1.0  # y never moves in the toy.
