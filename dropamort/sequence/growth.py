"""Growth rates of tracked droplets, and the heat their condensation carries, with 90 %
intervals propagated from the per-frame posteriors.

A track's growth rate is the least-squares slope of its radius against time over the
frames it was read in, dR/dt = Σ c_k R_k with c_k = (t_k − t̄) / Σ (t_j − t̄)². The frames'
posteriors are independent given the images, so posterior draws of every frame's radius
(log-normal, from the table's median and 90 % interval) pushed through the same sum are
draws of the slope: its interval is their 5 % and 95 % quantiles. The slope is linear in
the radii, so for small relative widths the interval is the analytic one, the median
slope ± 1.645 · sqrt(Σ c_k² σ_k²) (tests/sequence/test_growth.py checks this).

Volume: a droplet on a surface is a spherical cap whose base radius is the R read from
the image, V = f(θ) R³ with f(θ) = π (2 − 3 cos θ + cos³ θ) / (3 sin³ θ) for contact angle
θ (90°: a hemisphere, f = 2π/3). dV/dt is the least-squares slope of V(t), drawn the
same way. The heat condensation releases into the surface, per droplet, is
Q = ρ h_fg dV/dt (``density_kg_m3`` ρ, ``latent_heat_j_kg`` h_fg); over the field, the
mean heat flux q = Σ_tracks Q_i · (T_i / T) / A: each track's heat over the share T_i of the
sequence's time T it was followed, over the field's area A. Coalescence conserves
volume, so growth across a merge is not counted: a merged droplet is a new track.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

Z90 = 1.6448536269514722  # Standard normal 95 % quantile.
WATER_DENSITY_KG_M3 = 998.0  # Liquid water at 20 °C.
WATER_LATENT_HEAT_J_KG = 2.257e6  # Condensation enthalpy of water at 100 °C, 1 atm.


@dataclasses.dataclass(frozen=True)
class GrowthOptions:
  """How growth is fitted and turned into heat."""

  min_frames: int = 3  # Tracks read in fewer frames get no rate.
  draws: int = 1000  # Posterior draws per track.
  seed: int = 0
  contact_angle_deg: float = 90.0  # Of the droplets on the surface (90: hemispheres).
  density_kg_m3: float = WATER_DENSITY_KG_M3
  latent_heat_j_kg: float = WATER_LATENT_HEAT_J_KG

  def __post_init__(self):
    if self.min_frames < 2:
      raise ValueError(f"min_frames must be >= 2, got {self.min_frames}")
    if not 0 < self.contact_angle_deg <= 180:
      raise ValueError(f"contact_angle_deg must be in (0, 180], got {self.contact_angle_deg}")
    if self.density_kg_m3 <= 0 or self.latent_heat_j_kg <= 0:
      raise ValueError("density_kg_m3 and latent_heat_j_kg must be > 0")


def cap_factor(contact_angle_deg: float) -> float:
  """f(θ) of a spherical cap's volume V = f(θ) R³ with base radius R."""
  th = math.radians(contact_angle_deg)
  if contact_angle_deg == 180:
    raise ValueError("a contact angle of 180° has no base radius")
  return math.pi * (2 - 3 * math.cos(th) + math.cos(th) ** 3) / (3 * math.sin(th) ** 3)


def slope_weights(t: np.ndarray) -> np.ndarray:
  """c_k of the least-squares slope Σ c_k y_k of y against t."""
  d = t - t.mean()
  return d / np.sum(d**2)


def radius_draws(rng, rows: pd.DataFrame, n: int) -> np.ndarray:
  """(n, frames) draws of each frame's radius: log-normal with the table's median ``r``
  and its 90 % interval (``r_q05``, ``r_q95``), or its ``r_sd`` where there is none."""
  r = rows["r"].to_numpy(float)
  if {"r_q05", "r_q95"} <= set(rows.columns):
    s = (np.log(rows["r_q95"].to_numpy(float)) - np.log(rows["r_q05"].to_numpy(float))) / (2 * Z90)
  else:
    s = np.sqrt(np.log1p((rows["r_sd"].to_numpy(float) / r) ** 2))
  return r * np.exp(s * rng.standard_normal((n, len(r))))


def units(pixel_size: float | None, seconds: bool) -> dict:
  """Column units: lengths in µm with a pixel size (else px), time in s (else frames)."""
  length = "um" if pixel_size else "px"
  time = "s" if seconds else "frame"
  return {"length": length, "time": time, "rate": f"{length}_per_{time}",
          "volume_rate": f"{length}3_per_{time}"}


def _fits(tracks: pd.DataFrame, options: GrowthOptions, scale: float):
  """Per track read in at least ``min_frames`` frames, in track order: (track, times,
  slope weights, median radii, (draws, frames) radius draws), lengths times ``scale``.
  One generator of draws for every use, so rates and fluxes come from the same draws."""
  rng = np.random.default_rng(options.seed)
  for track, part in tracks.groupby("track", sort=True):
    part = part.sort_values("time_s")
    if len(part) < options.min_frames:
      continue
    t = part["time_s"].to_numpy(float)
    yield (int(track), t, slope_weights(t), part["r"].to_numpy(float) * scale,
           radius_draws(rng, part, options.draws) * scale)


def growth_rates(tracks: pd.DataFrame, options: GrowthOptions = GrowthOptions(), *,
                 pixel_size: float | None = None, seconds: bool = True) -> pd.DataFrame:
  """One row per track read in at least ``min_frames`` frames: frames, first and last
  time and radius, dR/dt and dV/dt with 90 % intervals and, with ``pixel_size`` (µm per
  px) and ``seconds`` (``time_s`` in seconds, not frame numbers), the heat Q in µW.

  ``tracks`` is ``link(...).table`` (track, time_s, r, r_q05, r_q95 or r_sd, original px).
  """
  u = units(pixel_size, seconds)
  f = cap_factor(options.contact_angle_deg)
  heat = pixel_size is not None and seconds
  rows = []
  for track, t, c, r_med, r_s in _fits(tracks, options, pixel_size or 1.0):
    row = {"track": track, "frames": len(t), "t_first": t[0], "t_last": t[-1],
           f"r_first_{u['length']}": r_med[0], f"r_last_{u['length']}": r_med[-1]}
    row.update(_with_interval(f"drdt_{u['rate']}", float(c @ r_med), r_s @ c))
    dv, dv_s = float(c @ (f * r_med**3)), (f * r_s**3) @ c
    row.update(_with_interval(f"dvdt_{u['volume_rate']}", dv, dv_s))
    if heat:  # µm³/s -> m³/s (1e-18), W -> µW (1e6).
      k = options.density_kg_m3 * options.latent_heat_j_kg * 1e-18 * 1e6
      row.update(_with_interval("heat_uW", k * dv, k * dv_s))
    rows.append(row)
  return pd.DataFrame(rows)


def _with_interval(name: str, point: float, draws: np.ndarray) -> dict:
  lo, hi = np.quantile(draws, [0.05, 0.95])
  return {name: point, f"{name}_q05": float(lo), f"{name}_q95": float(hi)}


def field_heat_flux(tracks: pd.DataFrame, area_um2: float, options: GrowthOptions =
                    GrowthOptions(), *, pixel_size: float,
                    total_s: float | None = None) -> dict:
  """The mean heat flux into the field over the sequence (W/m²) with its 90 % interval:
  Σ_tracks Q_i · T_i / T over the area (module docstring), from the same draws as
  ``growth_rates`` (the tracks' draws independent, so they are summed draw by draw)."""
  f = cap_factor(options.contact_angle_deg)
  total_t = (float(tracks["time_s"].max() - tracks["time_s"].min()) if total_s is None
             else float(total_s))  # The sequence's span (default: that of the tracks).
  if total_t <= 0:
    raise ValueError("the sequence spans no time")
  k = options.density_kg_m3 * options.latent_heat_j_kg * 1e-18  # W per µm³/s.
  point, draws, n = 0.0, np.zeros(options.draws), 0
  for _, t, c, r_med, r_s in _fits(tracks, options, pixel_size):
    share = (t[-1] - t[0]) / total_t
    point += share * k * float(c @ (f * r_med**3))
    draws += share * k * ((f * r_s**3) @ c)
    n += 1
  area_m2 = area_um2 * 1e-12
  lo, hi = np.quantile(draws / area_m2, [0.05, 0.95])
  return {"heat_flux_w_m2": point / area_m2, "ci90": [float(lo), float(hi)], "tracks": n,
          "area_um2": area_um2, "seconds": total_t}
