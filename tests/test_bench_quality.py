"""bench/quality.py --intervals: the rate at which the lab figures' 90 % intervals hold the
truth, on a fake reader whose intervals are given, against hand-computed figures."""

import math
import os
import sys
from types import SimpleNamespace

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, "bench"))
import quality  # noqa: E402


class FakeReader:
  """Returns the given summaries in turn, whatever the image."""

  def __init__(self, summaries):
    self.summaries = iter(summaries)

  def infer(self, image, options):
    count, coverage, d50, d32 = next(self.summaries)
    return SimpleNamespace(summary={"count": {"ci90": count}, "lab": {
        "coverage": {"ci90": coverage},
        "diameter_px": {"D50": {"ci90": d50}, "D32": {"ci90": d32}}}})


def test_interval_rates_against_hand_computed_truth():
  images = np.zeros((2, 10, 20, 3))  # 10 × 20 px: area 200 px².
  # Image 0: the droplet at x = 25 lies outside the image and does not count: count 2,
  # coverage π (1 + 4) / 200, diameters 2 and 4, so D50 3 and D32 (8 + 64) / (4 + 16) = 3.6.
  # Image 1: one droplet of r 2: count 1, coverage 4π / 200, D50 = D32 = 4.
  truth = [{"x": np.array([5.0, 15.0, 25.0]), "y": np.array([5.0, 5.0, 5.0]),
            "r": np.array([1.0, 2.0, 3.0])},
           {"x": np.array([5.0]), "y": np.array([5.0]), "r": np.array([2.0])}]
  reader = FakeReader([([1.5, 2.5], [0.07, 0.08], [2.9, 3.1], [3.0, 3.5]),  # D32 misses
                       ([2.0, 3.0], [0.06, 0.07], [3.9, 4.1], [3.9, 4.1])])  # count misses
  got = quality.interval_rates(reader, images, truth)
  cov0, cov1 = 5 * math.pi / 200, 4 * math.pi / 200
  want = {"count": (0.5, np.median([1 / 2, 1 / 1])),
          "coverage": (1.0, np.median([0.01 / cov0, 0.01 / cov1])),
          "D50": (1.0, np.median([0.2 / 3, 0.2 / 4])),
          "D32": (0.5, np.median([0.5 / 3.6, 0.2 / 4]))}
  assert got["images"] == 2
  for name, (rate, width) in want.items():
    assert got[f"ci90_rate_{name}"] == rate, name
    assert got[f"ci90_rel_width_{name}"] == pytest.approx(width, abs=1e-4), name
