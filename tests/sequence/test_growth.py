"""Growth-rate intervals against the analytic ones, volumes and heat by hand."""

import math

import numpy as np
import pandas as pd
import pytest

from dropamort.sequence.growth import (GrowthOptions, cap_factor, field_heat_flux,
                                       growth_rates, slope_weights)

Z90 = 1.6448536269514722


def track(t, r, rel_sd, track_id=0):
  """A track table whose frames' radius posteriors are log-normal(log r, rel_sd)."""
  r = np.asarray(r, float)
  return pd.DataFrame({"track": track_id, "time_s": np.asarray(t, float), "r": r,
                       "r_q05": r * np.exp(-Z90 * rel_sd), "r_q95": r * np.exp(Z90 * rel_sd),
                       "r_sd": r * rel_sd})


def test_the_rate_interval_is_the_analytic_one():
  """Radii read with 2 % log-normal posteriors: the slope is linear in the radii, so its
  draws have mean Σ c_k r_k e^{σ²/2} and variance Σ c_k² r_k² e^{σ²} (e^{σ²} − 1), and a
  sum of 12 nearly normal terms is nearly normal: the 90 % interval is mean ± 1.645 sd."""
  t = np.arange(12) * 5.0  # s
  r = 4.0 + 0.25 * t + np.random.default_rng(0).normal(0, 0.2, 12)  # px
  s = 0.02
  g = growth_rates(track(t, r, s), GrowthOptions(draws=40000))
  c = slope_weights(t)
  assert g["drdt_px_per_s"][0] == pytest.approx(np.polyfit(t, r, 1)[0], rel=1e-9)
  mean = np.sum(c * r) * math.exp(s**2 / 2)
  sd = math.sqrt(np.sum(c**2 * r**2) * math.exp(s**2) * (math.exp(s**2) - 1))
  assert g["drdt_px_per_s_q05"][0] == pytest.approx(mean - Z90 * sd, abs=0.03 * sd)
  assert g["drdt_px_per_s_q95"][0] == pytest.approx(mean + Z90 * sd, abs=0.03 * sd)


def test_intervals_cover_the_true_rate_nine_times_in_ten():
  """Tracks with a known rate, read with noise equal to their posteriors' width: the 90 %
  intervals hold the truth in 90 % of 400 tracks (binomial sd 1.5 %)."""
  rng = np.random.default_rng(1)
  t = np.arange(10.0)
  tables, truth = [], []
  for i in range(400):
    rate, r0, s = rng.uniform(0.1, 1.0), rng.uniform(3, 10), 0.05
    true_r = r0 + rate * t
    tables.append(track(t, true_r * np.exp(s * rng.standard_normal(10)), s, i))
    truth.append(rate)
  g = growth_rates(pd.concat(tables), GrowthOptions(draws=2000))
  inside = (g["drdt_px_per_s_q05"] <= truth) & (truth <= g["drdt_px_per_s_q95"])
  assert 0.85 <= inside.mean() <= 0.95


def test_volume_rate_heat_and_units_by_hand():
  """A hemisphere growing from 10 to 20 µm in radius over 10 s, read at 0.5 µm per px:
  dV/dt is the slope of (2π/3) R³, and Q = ρ h_fg dV/dt."""
  t = np.arange(11.0)
  r_um = 10 + t  # µm
  g = growth_rates(track(t, 2 * r_um, 1e-6), pixel_size=0.5)
  v = 2 * math.pi / 3 * r_um**3
  dvdt = np.polyfit(t, v, 1)[0]
  assert g["drdt_um_per_s"][0] == pytest.approx(1.0)
  assert g["dvdt_um3_per_s"][0] == pytest.approx(dvdt)
  assert g["heat_uW"][0] == pytest.approx(998.0 * 2.257e6 * dvdt * 1e-18 * 1e6)
  assert "heat_uW" not in growth_rates(track(t, r_um, 0.01)).columns  # px: no heat.
  frames = growth_rates(track(t, r_um, 0.01), seconds=False)
  assert "drdt_px_per_frame" in frames.columns


def test_cap_volume_factor():
  assert cap_factor(90) == pytest.approx(2 * math.pi / 3)
  # A cap of 60°: height h = R (1 − cos θ) / sin θ, V = π h (3R² + h²) / 6.
  th, R = math.radians(60), 1.0
  h = R * (1 - math.cos(th)) / math.sin(th)
  assert cap_factor(60) == pytest.approx(math.pi * h * (3 * R**2 + h**2) / 6)


def test_field_flux_is_the_tracks_heat_over_their_share_of_time_and_area():
  t = np.arange(11.0)
  a = track(t, 2 * (10 + t), 1e-6, 0)  # Followed the whole 10 s.
  b = track(t[:6], 2 * (5 + 0.5 * t[:6]), 1e-6, 1)  # Followed 5 of the 10 s.
  g = growth_rates(pd.concat([a, b]), pixel_size=0.5)
  flux = field_heat_flux(pd.concat([a, b]), area_um2=1e6, pixel_size=0.5)
  heat_w = g["heat_uW"].to_numpy() * 1e-6
  assert flux["heat_flux_w_m2"] == pytest.approx((heat_w[0] + 0.5 * heat_w[1]) / 1e-6)
  assert flux["ci90"][0] <= flux["heat_flux_w_m2"] <= flux["ci90"][1]
  assert flux["tracks"] == 2


def test_short_tracks_get_no_rate():
  t = np.arange(2.0)
  assert growth_rates(track(t, [3.0, 4.0], 0.05)).empty
