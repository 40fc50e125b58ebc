"""The image pyramid: levels, exact halvings, and overlap resolution against brute force."""

import math

import numpy as np
import pytest

from dropamort.config import ModelConfig
from dropamort.pyramid import KEEP_MARGIN, build_pyramid, plan_levels, resolve


def test_levels_reach_the_largest_droplet_the_image_holds_and_bands_overlap_by_the_margin():
  levels = plan_levels(380, 507, ModelConfig())
  # 380 / 32 = 11.9 px ≤ 2 × 8: a droplet 380 px across is ≤ 8 px at level 5; level 4's
  # 23.75 px would not hold it.
  assert len(levels) == 6
  m = KEEP_MARGIN
  edges = [(lv.keep[0] * lv.factor, lv.keep[1] * lv.factor) for lv in levels]
  want = [(0.0, 8.0)] + [(4 * m * 2**k, 8.0 * 2**k) for k in range(1, 5)] + [(4 * m * 32,
                                                                               math.inf)]
  np.testing.assert_allclose(edges, want)
  assert [lv.handoff * lv.factor for lv in levels] == [0.0, 8.0, 16.0, 32.0, 64.0, 128.0]
  assert len(plan_levels(64, 64, ModelConfig())) == 3  # 64, 32, 16 px: 16 ≤ 2 × 8.
  assert len(plan_levels(640, 960, ModelConfig())) == 7
  assert len(plan_levels(380, 507, ModelConfig(), max_levels=1)) == 1
  assert plan_levels(380, 507, ModelConfig(), max_levels=1)[0].keep == (0.0, math.inf)


def test_each_level_is_the_exact_block_mean_of_the_base(key):
  base = np.random.default_rng(0).random((37, 50, 3)).astype(np.float32)
  levels = build_pyramid(base, 3)
  assert [lv.shape[:2] for lv in levels] == [(37, 50), (19, 25), (10, 13)]
  np.testing.assert_allclose(levels[1][4, 7], base[8:10, 14:16].mean((0, 1)), rtol=1e-6)
  np.testing.assert_allclose(levels[2][2, 3], base[8:12, 12:16].mean((0, 1)), rtol=1e-6)
  # An odd side repeats its edge: the last row of level 1 averages row 36 with itself.
  np.testing.assert_allclose(levels[1][18, 0], base[36, 0:2].mean(0), rtol=1e-6)


def brute_force(c, threshold, hard_core):
  """Independent O(N²) resolution: coarse levels first (a margin read, ``yields``, after
  every read of the level below its own), then higher p; a confident survivor removes
  later candidates (any level) that are the same droplet (centres within half the larger
  radius, radii within a factor 2) or, hard core, centred inside it."""
  n = len(c["x"])
  rank = lambda i: c["level"][i] - 1 - 0.5 if c["yields"][i] else c["level"][i]
  order = sorted(range(n), key=lambda i: (-rank(i), -c["p"][i]))
  keep = [True] * n
  for a, i in enumerate(order):
    if not keep[i] or c["p"][i] <= threshold:
      continue
    for j in order[a + 1:]:
      if not keep[j]:
        continue
      d = math.hypot(c["x"][i] - c["x"][j], c["y"][i] - c["y"][j])
      big, small = max(c["r"][i], c["r"][j]), min(c["r"][i], c["r"][j])
      if (d <= 0.5 * big and 2 * small >= big) or (hard_core and d < big):
        keep[j] = False
  return np.array(keep)


@pytest.mark.parametrize("hard_core", [True, False])
def test_resolution_equals_the_brute_force_reference(hard_core):
  rng = np.random.default_rng(1)
  parts = []
  for level, (n, r_lo, r_hi) in enumerate([(400, 1, 8), (30, 8, 16), (5, 16, 32)]):
    parts.append({"x": rng.uniform(0, 200, n), "y": rng.uniform(0, 150, n),
                  "r": rng.uniform(r_lo, r_hi, n), "p": rng.uniform(0, 1, n),
                  "level": np.full(n, level), "yields": rng.uniform(0, 1, n) < 0.3 * level})
  # Duplicates across levels: copies of coarse droplets read again one level finer.
  dup = {k: v[:10].copy() for k, v in parts[1].items()}
  dup["x"] += rng.normal(0, 1, 10)
  dup["r"] *= 0.95
  dup["level"][:] = 0
  dup["yields"][:] = False
  parts.append(dup)
  c = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
  got = resolve(c, threshold=0.5, hard_core=hard_core)
  want = brute_force(c, 0.5, hard_core)
  np.testing.assert_array_equal(got, want)
  assert 10 <= (~got).sum() < 3 * len(got) // 4  # Resolution did something, not everything.


def test_a_coarse_droplet_wins_over_what_a_finer_level_reads_inside_it():
  c = {"x": np.array([50.0, 52.0, 58.0, 50.5, 80.0]),
       "y": np.array([50.0, 49.0, 55.0, 50.0, 80.0]),
       "r": np.array([20.0, 3.0, 4.0, 18.0, 3.0]),
       "p": np.array([0.7, 0.9, 0.95, 0.99, 0.9]),
       "level": np.array([2, 0, 0, 1, 0])}
  # Level 1 reads the same droplet (duplicate); level 0 reads highlights inside it.
  np.testing.assert_array_equal(resolve(c, threshold=0.5, hard_core=True),
                                [True, False, False, False, True])
  # Droplets that may overlap in projection (emulsions): only the duplicate goes.
  np.testing.assert_array_equal(resolve(c, threshold=0.5, hard_core=False),
                                [True, True, True, False, True])
  # An unsure coarse candidate removes nothing: the level-1 read of the droplet does.
  c["p"][0] = 0.3
  assert resolve(c, threshold=0.5, hard_core=True).tolist() == [True, False, False, True, True]


def test_one_level_reading_a_droplet_twice_keeps_the_more_probable_read():
  # Two neighbouring cells of level 0 read one droplet (a duplicate); two droplets that
  # touch (centres r1 + r2 apart) are both kept, hard core or not.
  c = {"x": np.array([30.0, 31.5, 60.0, 68.0]), "y": np.array([30.0, 30.5, 60.0, 60.0]),
       "r": np.array([5.0, 4.6, 4.0, 4.0]), "p": np.array([0.8, 0.95, 0.9, 0.9]),
       "level": np.zeros(4, int)}
  for hard_core in (True, False):
    assert resolve(c, threshold=0.5, hard_core=hard_core).tolist() == [False, True, True, True]


def test_a_duplicate_within_a_level_leaves_the_table_but_keeps_its_probability():
  from dropamort.encoder.posterior import CatalogPosterior
  from dropamort.pyramid import LevelResult, Level, merged_candidates, point_mask

  gy = gx = 8
  model = ModelConfig(cell=4)
  z = lambda *s: np.zeros((1, gy, gx) + s, np.float32)
  on = np.full((1, gy, gx), -10.0, np.float32)
  off, logr = z(2), np.log(np.full((1, gy, gx), 3.0, np.float32))
  # Cells (3, 3) and (3, 4) both read one droplet at x = 16.0 + 4 · sigmoid(off) ≈ 15.9
  # and 16.1 (offsets -0.1 / +0.1 cell lengths either side of their shared edge).
  on[0, 3, 3], on[0, 3, 4] = 1.0, 3.0  # p 0.73 and 0.95
  off[0, 3, 3] = [np.log(0.975 / 0.025), 0.0]
  off[0, 3, 4] = [np.log(0.025 / 0.975), 0.0]
  on[0, 6, 1] = 2.0  # A droplet of its own.
  post = CatalogPosterior(on, off, z(2) + 0.1, logr, z() + 0.1, z(3), z(3) + 1.0, z(3),
                          z(3) + 0.1)
  level = LevelResult(Level(0, (0.0, np.inf)), np.zeros((32, 32, 3), np.float32), post)
  cands = merged_candidates([level], model, threshold=0.5)
  assert len(cands["x"]) == 3  # The duplicate stays a candidate (posterior draws) ...
  kept = point_mask(cands, 0.5)
  np.testing.assert_allclose(sorted(cands["p"][kept]), [0.881, 0.953], atol=1e-3)  # Not a point.
  np.testing.assert_allclose(cands["p"].sum(), 1 / (1 + np.exp(-1)) + 0.953 + 0.881, atol=2e-3)


def test_a_margin_read_yields_to_the_finer_level_but_stands_alone():
  # One droplet of 7 px read by level 0 (top of its band, p 0.8) and by level 1 in its
  # margin (3.4 level px, p 0.99): the finer read wins. A droplet read only in level 1's
  # margin is kept; so is a level-1 read in its own octave, over a finer one (p 0.99).
  c = {"x": np.array([40.0, 40.5, 100.0, 150.0, 150.3]),
       "y": np.array([40.0, 40.2, 100.0, 50.0, 50.0]),
       "r": np.array([7.0, 6.8, 6.5, 12.0, 7.5]),
       "p": np.array([0.8, 0.99, 0.9, 0.7, 0.99]),
       "level": np.array([0, 1, 1, 1, 0]),
       "yields": np.array([False, True, True, False, False])}
  for hard_core in (True, False):
    assert resolve(c, threshold=0.5, hard_core=hard_core).tolist() == [True, False, True, True,
                                                                      False]
  # Without the handoff the coarser read would win.
  c["yields"][:] = False
  assert resolve(c, threshold=0.5, hard_core=True).tolist() == [False, True, True, True, False]


def _resolve_one_by_one(cands, *, threshold, hard_core):
  """The rule of ``resolve`` written as its definition: in order, every confident
  survivor removes every later candidate that conflicts with it (O(N²))."""
  from dropamort.pyramid import _order, conflict

  n = len(cands["x"])
  keep, same = np.ones(n, bool), np.zeros(n, bool)
  order = list(_order(cands))
  for a, i in enumerate(order):
    if not keep[i] or cands["p"][i] <= threshold:
      continue
    for j in order[a + 1:]:
      if keep[j] and conflict(cands["x"][i], cands["y"][i], cands["r"][i], cands["x"][j],
                              cands["y"][j], cands["r"][j], hard_core=hard_core):
        keep[j], same[j] = False, cands["level"][j] == cands["level"][i]
  return keep, same


@pytest.mark.parametrize("hard_core", [True, False])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_resolve_equals_its_definition_on_crowded_candidates(seed, hard_core):
  """Hundreds of candidates of three levels crowded together, some exactly coincident,
  some at exactly one radius: the fast resolution equals the one-by-one rule."""
  from dropamort.pyramid import _resolve

  rng = np.random.default_rng(seed)
  n = 400
  level = rng.integers(0, 3, n)
  c = {"x": rng.uniform(0, 120, n), "y": rng.uniform(0, 90, n),
       "r": rng.uniform(1, 6, n) * 2.0**level, "p": rng.uniform(0, 1, n), "level": level,
       "yields": rng.random(n) < 0.2}
  c["x"][:20], c["y"][:20] = c["x"][20:40], c["y"][20:40]  # Coincident centres.
  c["x"][40:60] = c["x"][60:80] + c["r"][60:80]  # Centred exactly on another's edge.
  c["y"][40:60] = c["y"][60:80]
  got = _resolve(c, threshold=0.5, hard_core=hard_core)
  want = _resolve_one_by_one(c, threshold=0.5, hard_core=hard_core)
  np.testing.assert_array_equal(got[0], want[0])
  np.testing.assert_array_equal(got[1], want[1])
  assert 0 < got[0].sum() < n  # Some lose, some survive.
