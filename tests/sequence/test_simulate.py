"""The sequence simulator's physics against its own growth laws and geometry, and its
frame renderer against the model's ``render_catalog`` of the same droplets."""

import numpy as np
import pandas as pd
import pytest

from dropamort.config import ModelConfig
from dropamort.model.catalog import from_table
from dropamort.model.decoder import bind
from dropamort.model.model import configured_decoder_params, decoder_module, render_catalog
from dropamort.sequence.simulate import Sequence, render_frames, simulate_sequence


@pytest.fixture(scope="module", params=[1.0, 0.6], ids=["beta1", "beta0.6"])
def seq(request):
  return simulate_sequence(3, frames=30, height=256, width=384, nucleation=0.3,
                           growth=0.8, beta=request.param, dt=2.0)


def law(tracks: pd.DataFrame, track: int, t: float) -> float:
  row = tracks.set_index("track").loc[track]
  return row.r0 + row.g * max(t - row.t0, 0.0) ** row.beta


def test_volume_is_conserved_at_every_coalescence(seq):
  assert len(seq.events) >= 10
  d = seq.droplets.set_index(["track", "frame"])
  # A parent's law gives its radius at the merge (it is never drawn grown to that frame).
  laws = seq.tracks.copy()
  for e in seq.events:
    child_r = d.loc[(e.track, e.frame), "r"]
    parents_v = sum(law(laws, p, e.frame) ** 3 for p in e.parents)
    assert child_r**3 == pytest.approx(parents_v, rel=1e-6)
    assert law(laws, e.track, e.frame) == pytest.approx(child_r, rel=1e-9)
    for p in e.parents:  # Parents end the frame before; the child is a new track.
      assert d.loc[p].index.max() == e.frame - 1
    assert d.loc[e.track].index.min() == e.frame


def test_radii_follow_the_growth_laws(seq):
  laws = seq.tracks.set_index("track")
  row = laws.loc[seq.droplets.track]
  expect = row.r0.to_numpy() + row.g.to_numpy() * np.maximum(
      seq.droplets.frame.to_numpy() - row.t0.to_numpy(), 0) ** row.beta.to_numpy()
  np.testing.assert_allclose(seq.droplets.r, expect, rtol=1e-9)


def test_no_two_droplets_overlap_in_any_frame(seq):
  for _, f in seq.droplets.groupby("frame"):
    x, y, r = f.x.to_numpy(), f.y.to_numpy(), f.r.to_numpy()
    gap = np.hypot(x[:, None] - x, y[:, None] - y) - (r[:, None] + r)
    np.fill_diagonal(gap, np.inf)
    assert gap.min() > 0


def test_true_growth_rates_are_least_squares_slopes_of_the_catalogued_radii(seq):
  truth = seq.truth
  assert truth.x.between(0, seq.width).all() and truth.y.between(0, seq.height).all()
  rates = seq.tracks.set_index("track").growth_rate
  checked = 0
  for track, g in truth.groupby("track"):
    if len(g) < 2:
      assert np.isnan(rates[track])
      continue
    slope = np.polyfit(g.frame.to_numpy() * seq.dt, g.r.to_numpy(), 1)[0]
    assert rates[track] == pytest.approx(slope, rel=1e-6, abs=1e-9)
    checked += 1
  assert checked >= 50


def test_the_default_sequence_meets_the_benchmark_targets():
  seq = simulate_sequence(0)
  truth = seq.truth
  assert truth.track.nunique() >= 200
  assert len(seq.events) >= 24
  last = truth[truth.frame == seq.frames - 1]
  assert 30 <= last.r.max() <= 64
  coverage = truth.groupby("frame").r.apply(lambda r: np.pi * np.sum(r**2))
  assert coverage.max() / (seq.height * seq.width) < 0.55


# --- rendering -------------------------------------------------------------------------

CFG = ModelConfig(height=64, width=128)  # The reader's structure, the tests' canvas.


def one_frame(rows: list[tuple[float, float, float]]) -> Sequence:
  comp = np.array([[0.9, 0.1, 0.4], [0.2, 0.8, 0.5]])[:len(rows)]
  droplets = pd.DataFrame({"track": np.arange(len(rows)), "frame": 0,
                           "x": [r[0] for r in rows], "y": [r[1] for r in rows],
                           "r": [r[2] for r in rows], "c0": comp[:, 0], "c1": comp[:, 1],
                           "c2": comp[:, 2]})
  return Sequence(height=64, width=128, margin=64, dt=1.0, frames=1, droplets=droplets,
                  tracks=pd.DataFrame(), events=[])


@pytest.mark.parametrize("r", [5.0, 12.0, 20.0, 40.0])  # The band, larger layers 1-3.
def test_one_droplet_renders_as_render_catalog_of_it(r):
  params = configured_decoder_params(CFG)
  seq = one_frame([(70.3, 30.6, r)])
  bg = np.array([0.4, 0.5, 0.2], np.float32)
  image = render_frames(seq, CFG, params, noise_sigma=0.0, seed=0, background=bg)[0]
  table = {"x": [70.3], "y": [30.6], "r": [r], "composition": [[0.9, 0.1, 0.4]]}
  none = {"x": [], "y": [], "r": [], "composition": np.zeros((0, 3))}
  tops = [CFG.radius_max] + [CFG.larger(j)[2] for j in range(1, CFG.larger_layers + 1)]
  layer = int(np.searchsorted(tops, r))  # The first layer whose largest radius is >= r.
  cats = []
  for j in range(len(tops)):
    cell = CFG.cell if j == 0 else CFG.larger(j)[0]
    grid = (-(-64 // cell), -(-128 // cell))
    cat = from_table(table if j == layer else {**table, "x": [0.5], "y": [0.5]}, bg, grid,
                     cell)
    cats.append(cat if j == layer else cat.replace(on_BYX=cat.on_BYX & False))
  ref = render_catalog(CFG, bind(decoder_module(CFG), params), cats[0], cats[1:])[0]
  np.testing.assert_allclose(image, np.clip(ref, 0, 1), atol=2e-6)
  assert np.abs(image - image[0, -1]).max() > 0.05  # The droplet is drawn.


def test_two_droplets_in_one_cell_both_render():
  params = configured_decoder_params(CFG)
  seq = one_frame([(17.0, 17.0, 9.0), (31.0, 31.0, 9.0)])  # Both in cell (1, 1) of 16 px.
  image = render_frames(seq, CFG, params, noise_sigma=0.0, seed=0)[0]
  bare = image[2, 120]  # Far from both: the bare background.
  for x, y in ((17, 17), (31, 31)):
    assert np.abs(image[y, x] - bare).max() > 0.05
