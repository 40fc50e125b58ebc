"""The one droplet-table schema: column names shared by every table the project writes.

A table has one row per droplet: ``x``, ``y`` (pixel centre coordinates; pixel (i, j)
covers [j, j+1) × [i, i+1)), ``r`` (px), the composition, ``p`` (probability that the
droplet exists) and, for each quantity ``q``, its posterior standard deviation ``q_sd``
and the bounds of its central credible interval. Interval columns are named by the
quantiles they are, so their meaning is in their name: ``q_q05`` and ``q_q95`` for the
default 90% interval, ``q_q25`` and ``q_q75`` for a 50% one. Internal (dict) tables keep
the composition as one (N, T) array; the user-facing tables (CSV, parquet) split it into
``composition_1`` … ``composition_T`` with the same suffixes.
"""

from __future__ import annotations

QUANTITIES = ("x", "y", "r", "composition")
LEVEL = 0.9  # The credible interval written to every user-facing table.


def interval_names(name: str, level: float = LEVEL) -> tuple[str, str]:
  """Column names of the central ``level`` interval of ``name``: ('r_q05', 'r_q95')."""
  lo = (1 - level) / 2
  tag = lambda q: f"q{round(100 * q):02d}"
  if abs(100 * lo - round(100 * lo)) > 1e-9:
    raise ValueError(f"interval level {level} does not fall on whole percentiles")
  return f"{name}_{tag(lo)}", f"{name}_{tag(1 - lo)}"


def sd_name(name: str) -> str:
  """Column name of the posterior standard deviation of ``name``."""
  return f"{name}_sd"
