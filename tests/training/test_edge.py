"""Where droplets' edges lie: measured on drawn discs whose edges are known."""

import numpy as np
import pytest
from scipy import ndimage

from dropamort.inference.catalog_table import at_edge
from dropamort.model.prior import IDENTITY_EDGE, edge_factor, edge_slope, is_identity
from dropamort.training.edge import edge_map, steepest

BACKGROUND, BODY, HALO = np.array([0.7, 0.6, 0.3]), np.array([0.2, 0.2, 0.15]), 0.95


def discs(shape, x, y, radius, *, halo=0.0, blur=1.0, dark=True):
  """An RGB image of discs (edges at ``radius``, pixel centres at integer + 0.5), each
  optionally ringed by a bright halo from r to (1 + halo) r, blurred by ``blur`` px."""
  h, w = shape
  yy, xx = np.mgrid[0:h, 0:w] + 0.5
  body, back = (BODY, BACKGROUND) if dark else (BACKGROUND, BODY)
  img = np.broadcast_to(back, (h, w, 3)).copy()
  for cx, cy, r in zip(x, y, radius):
    d = np.hypot(xx - cx, yy - cy)
    img[(d >= r) & (d < (1 + halo) * r)] = HALO
    img[d < r] = body
  return np.stack([ndimage.gaussian_filter(img[..., c], blur) for c in range(3)], -1)


def grid_of(radii, spacing):
  """Centres on a grid, far enough apart that no profile reaches a neighbour."""
  n = len(radii)
  cols = int(np.ceil(np.sqrt(n)))
  x = (np.arange(n) % cols + 0.5) * spacing + 0.37  # Off the pixel grid.
  y = (np.arange(n) // cols + 0.5) * spacing + 0.61
  shape = (int((n - 1) // cols + 1) * spacing, cols * spacing)
  return x, y, shape


# A dark droplet with a bright halo (the condensation set's) has its edge where the dark
# body meets the halo: the halo steps the other way from the droplet's contrast.
@pytest.mark.parametrize("dark, halo", [(True, 0.0), (True, 0.25), (False, 0.0)])
def test_steepest_finds_the_disc_edge_from_reads_too_large(dark, halo):
  radius = np.full(9, 12.0)
  x, y, shape = grid_of(radius, 64)
  image = discs(shape, x, y, radius, halo=halo, dark=dark)
  # Reads 1.25 × the edge (the outline search's 1.25 on a haloed microscope).
  t = steepest(image, x, y, 1.25 * radius)
  np.testing.assert_allclose(t, 0.8, atol=0.03)


def test_steepest_skips_small_reads_and_profiles_leaving_the_image():
  image = discs((40, 40), [20.0], [20.0], [8.0])
  t = steepest(image, [20.0, 20.0, 3.0], [20.0, 20.0, 20.0], [8.0, 2.0, 8.0])
  assert abs(t[0] - 1.0) < 0.03 and np.isnan(t[1]) and np.isnan(t[2])


def test_edge_map_recovers_an_affine_read_convention():
  rng = np.random.default_rng(3)
  edge = np.exp(rng.uniform(np.log(4), np.log(24), 120))
  x, y, shape = grid_of(edge, 100)
  image = discs(shape, x, y, edge, halo=0.2, blur=0.5)
  # Reads that put a constant 2 px and 10 % outside the edge: edge = r / 1.1 - 2 / 1.1.
  reads = 1.1 * edge + 2.0
  (a, b, r0), n = edge_map([image], [{"x": x, "y": y, "r": reads}])
  assert n == 120
  assert a == pytest.approx(1 / 1.1, abs=0.02) and b == pytest.approx(-2 / 1.1, abs=0.25)
  # Nine in ten droplets within 2 % (centres half a pixel off would give 5.6 %).
  recovered = reads * edge_factor(reads, (a, b, r0))
  assert np.percentile(np.abs(recovered / edge - 1), 90) < 0.02


def test_edge_map_from_too_few_droplets_is_the_identity():
  image = discs((40, 40), [20.0], [20.0], [8.0])
  # One droplet measured (its edge at 0.8 × the read), one too small to measure.
  t = {"x": [20.0, 20.0], "y": [20.0, 20.0], "r": [10.0, 2.0]}
  assert edge_map([image], [t]) == (IDENTITY_EDGE, 1)
  assert edge_map([], []) == (IDENTITY_EDGE, 0)


def test_edge_factor_is_affine_above_r0_and_proportional_below():
  edge = (0.8, -1.0, 4.0)
  np.testing.assert_allclose(edge_factor([10.0, 4.0, 2.0], edge), [0.7, 0.55, 0.55])
  np.testing.assert_allclose(edge_slope([10.0, 2.0], edge), [0.8, 0.55])
  assert is_identity((1.0, 0.0, 7.0)) and not is_identity(edge)


def test_at_edge_pushes_the_radius_posterior_through_the_map_and_nothing_else():
  cands = {"x": np.array([5.0, 6.0]), "r": np.array([10.0, 2.0]),
           "r_q05": np.array([8.0, 1.5]), "r_q95": np.array([12.0, 2.5]),
           "r_sd": np.array([1.0, 0.3]), "r_log_loc": np.log([10.0, 2.0]),
           "r_log_scale": np.array([0.1, 0.2]), "p": np.array([0.9, 0.6])}
  # Original px are twice these; the map there is 0.8 r - 1 above 4 px, 0.55 r below.
  out = at_edge(cands, (0.8, -1.0, 4.0), ratio=2.0)
  np.testing.assert_allclose(out["r"], [(0.8 * 20 - 1) / 2, 0.55 * 2])
  np.testing.assert_allclose(out["r_q05"], [(0.8 * 16 - 1) / 2, 0.55 * 1.5])
  np.testing.assert_allclose(out["r_q95"], [(0.8 * 24 - 1) / 2, (0.8 * 5 - 1) / 2])  # 5 px: above.
  np.testing.assert_allclose(out["r_sd"], [0.8, 0.8 * 0.3])  # The slope at 20 and 4 px.
  np.testing.assert_allclose(np.exp(out["r_log_loc"]), out["r"])
  for k in ("x", "r_log_scale", "p"):
    np.testing.assert_array_equal(out[k], cands[k])
  assert at_edge(cands, IDENTITY_EDGE) is cands
