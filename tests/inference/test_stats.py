"""Lab figures against hand-computed values on a tiny catalog, and their intervals."""

import jax
import numpy as np

from dropamort.inference.stats import draw, interval, lab_summary, per_sample


def catalog(r, p, scale=1e-9):
  n = len(r)
  return {"p": np.asarray(p, float), "r_log_loc": np.log(np.asarray(r, float)),
          "r_log_scale": np.full(n, scale)}


def test_figures_equal_hand_computed_values():
  # Three sure droplets of radius 2, 3 and 5 px in a 100 × 100 px image of 0.5 µm pixels.
  summary = lab_summary(*draw(jax.random.key(0), catalog([2, 3, 5], [1, 1, 1]), 50),
                        area_px=100 * 100, pixel_size=0.5)
  d = summary["diameter_um"]
  np.testing.assert_allclose(summary["coverage"]["median"], np.pi * (4 + 9 + 25) / 1e4)
  # Diameters 2, 3 and 5 µm: D32 = Σd³ / Σd² = 160 / 38.
  np.testing.assert_allclose(d["D32"]["median"], 160 / 38, rtol=1e-6)
  np.testing.assert_allclose(d["D50"]["median"], 3.0, rtol=1e-6)
  # 3 droplets in 10⁴ px × (0.5 µm)² = 2.5 × 10⁻³ mm².
  np.testing.assert_allclose(summary["number_density_per_mm2"]["median"], 1200.0, rtol=1e-6)
  np.testing.assert_allclose(summary["diameter_px"]["D50"]["median"], 6.0, rtol=1e-6)


def test_without_a_pixel_size_densities_are_per_megapixel_and_lengths_in_pixels():
  summary = lab_summary(*draw(jax.random.key(0), catalog([4], [1]), 20, ratio=2.0),
                        area_px=1e6, pixel_size=None)
  np.testing.assert_allclose(summary["number_density_per_megapixel"]["median"], 1.0)
  np.testing.assert_allclose(summary["diameter_px"]["D50"]["median"], 16.0)  # 2 × 4 × 2.
  assert "diameter_um" not in summary


def test_intervals_follow_the_posterior():
  """Uncertain droplets: the count is Binomial(10, 0.5); its 90% interval is the
  binomial's, and a sample without droplets has no diameters (not zero)."""
  on, radius = draw(jax.random.key(1), catalog([3] * 10, [0.5] * 10), 4000)
  s = per_sample(on, radius, area_px=1e4, pixel_size=None)
  iv = interval(s["count"])
  assert iv["median"] == 5 and iv["ci90"] == [2.0, 8.0]
  empty = per_sample(np.zeros((3, 2), bool), np.ones((3, 2)), area_px=1.0, pixel_size=None)
  assert np.all(np.isnan(empty["D50"])) and interval(empty["D50"]) == {"median": None,
                                                                         "ci90": None}
