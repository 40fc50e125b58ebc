"""bench/real_radii.py's table: ratios of read to labelled radii and centre offsets, grouped."""

import os
import sys

import pandas as pd

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, "bench"))
from real_radii import BINS, ratio_table  # noqa: E402


def test_ratios_are_grouped_with_their_quartiles():
  # Level 0: ratios 0.5, 0.7, 0.9 (median 0.7, quartiles 0.6 and 0.8), centre offsets
  # -1, -2, 0 px in x at r = 10 (mean -0.1 r); level 1: 1.2 alone, 4 px in y at r = 40.
  df = pd.DataFrame({"r_true": [10.0, 10.0, 10.0, 40.0], "r_read": [5.0, 7.0, 9.0, 48.0],
                     "level": [0, 0, 0, 1], "dx": [-1.0, -2.0, 0.0, 0.0],
                     "dy": [0.0, 0.0, 0.0, 4.0]})
  by_level = ratio_table(df, "level")
  assert by_level == [
      {"group": "0", "pairs": 3, "ratio_median": 0.7, "ratio_q25": 0.6, "ratio_q75": 0.8,
       "dx_over_r": -0.1, "dy_over_r": 0.0},
      {"group": "1", "pairs": 1, "ratio_median": 1.2, "ratio_q25": 1.2, "ratio_q75": 1.2,
       "dx_over_r": 0.0, "dy_over_r": 0.1}]
  df["bin"] = pd.cut(df.r_true, BINS)
  assert [(t["group"], t["pairs"]) for t in ratio_table(df, "bin")] == [("(8, 12]", 3),
                                                                        ("(32, 48]", 1)]
