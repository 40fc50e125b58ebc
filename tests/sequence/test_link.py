"""Linking on hand-made scenes whose answer is known: a gap, a birth, two coalescences."""

import numpy as np
import pandas as pd
import pytest

from dropamort.sequence.link import LinkOptions, learn_motion, link

SD = {"x_sd": 0.3, "y_sd": 0.3, "r_sd": 0.2}


def frame(*droplets):
  """A droplet table (the columns link reads) from (x, y, r) triples."""
  rows = [dict(x=x, y=y, r=r, **SD) for x, y, r in droplets]
  return pd.DataFrame(rows, columns=["x", "y", "r", *SD])


def merged(*parents):
  """The droplet two touching droplets become: volume-weighted centre, volumes added."""
  v = np.array([r**3 for _, _, r in parents])
  x = sum(p[0] * w for p, w in zip(parents, v)) / v.sum()
  y = sum(p[1] * w for p, w in zip(parents, v)) / v.sum()
  return (x, y, float(v.sum() ** (1 / 3)))


STILL = [(1000.0 + 30 * i, 1000.0 + 40 * (i % 7), 5.0) for i in range(30)]


def scene():
  """Frames 0-4. A grows throughout; B is missed in frame 2; C is born in frame 2; D and
  E (touching) merge into F in frame 3; a large G swallows H (a sixth of its volume) in
  frame 3, which barely moves G; 30 still droplets far away say how much droplets move
  (not at all) and grow (not at all) between frames."""
  a = lambda f: (20.0, 20.0, 5.0 + 0.5 * f)
  b, c = (60.0, 20.0, 4.0), (20.0, 60.0, 3.0)
  d, e = (100.0, 50.0, 6.0), (112.0, 50.0, 6.0)
  g, h = (200.0, 200.0, 10.0), (215.6, 200.0, 5.5)
  f_, gh = merged(d, e), merged(g, h)
  return [frame(a(0), b, d, e, g, h, *STILL), frame(a(1), b, d, e, g, h, *STILL),
          frame(a(2), c, d, e, g, h, *STILL), frame(a(3), b, c, f_, gh, *STILL),
          frame(a(4), b, c, f_, gh, *STILL)]


def track_of(tracks, f, row):
  t = tracks.table
  return int(t[(t.frame == f) & (t.row == row)].track.iloc[0])


def test_a_gap_a_birth_and_two_coalescences_come_out_as_built():
  tables = scene()
  tracks = link(tables, np.arange(5.0))
  t = tracks.table
  assert len(t) == sum(len(x) for x in tables)  # Every detection is on exactly one track.
  a = [track_of(tracks, f, 0) for f in range(5)]
  assert len(set(a)) == 1  # A, growing 0.5 px a frame, is one track.
  b = {track_of(tracks, f, 1) for f in (0, 1)} | {track_of(tracks, f, 1) for f in (3, 4)}
  assert len(b) == 1  # B, missed in frame 2, is continued across the gap ...
  assert t[(t.frame == 3) & (t.row == 1)].event.iloc[0] == "gap"
  c = track_of(tracks, 2, 1)
  assert t[(t.frame == 2) & (t.row == 1)].event.iloc[0] == "birth"
  assert track_of(tracks, 3, 2) == c and track_of(tracks, 4, 2) == c
  # D and E end in frame 2 as merged; F starts a new track in frame 3 with them as parents.
  d, e = track_of(tracks, 2, 2), track_of(tracks, 2, 3)
  g, h = track_of(tracks, 2, 4), track_of(tracks, 2, 5)
  f_, gh = track_of(tracks, 3, 3), track_of(tracks, 3, 4)
  assert len({d, e, f_, g, h, gh, c} | set(a) | b) == 9  # A B C D E F G H GH
  assert gh == f_ + 1  # Not G's track continued: a new one.
  ev = tracks.events[tracks.events.kind == "coalescence"]
  got = {(int(r.frame), int(r.track), tuple(sorted(int(p) for p in r.parents.split(";"))))
         for r in ev.itertuples()}
  assert got == {(3, f_, tuple(sorted((d, e)))), (3, gh, tuple(sorted((g, h))))}
  for tr in (d, e, g, h):
    assert t[t.track == tr].frame.max() == 2
    assert t[(t.track == tr) & (t.frame == 2)].event.iloc[0] == "merged"
  assert track_of(tracks, 4, 3) == f_ and track_of(tracks, 4, 4) == gh
  assert set(tracks.events.kind) == {"birth", "gap", "coalescence"}  # Nothing dies.


def test_a_missed_neighbour_does_not_break_the_track_it_touches():
  """Two touching droplets; the smaller is missed in frame 1. The larger's volume alone
  explains it, so it keeps its track and the smaller comes back through the gap."""
  big, small = (100.0, 100.0, 8.0), (111.0, 100.0, 3.0)
  tables = [frame(big, small, *STILL), frame(big, *STILL), frame(big, small, *STILL)]
  # Then both vanish (nothing they touch): two deaths, and no coalescence from the time
  # the smaller was lost beside the larger.
  tables += [frame(*STILL) for _ in range(4)]
  tracks = link(tables, np.arange(7.0))
  assert {track_of(tracks, f, 0) for f in range(3)} == {track_of(tracks, 0, 0)}
  assert track_of(tracks, 2, 1) == track_of(tracks, 0, 1)
  assert "coalescence" not in set(tracks.events.kind)
  deaths = tracks.events[tracks.events.kind == "death"]
  assert set(deaths.track) == {track_of(tracks, 2, 0), track_of(tracks, 2, 1)}


def test_a_track_missed_longer_than_max_gap_dies_and_its_return_is_a_birth():
  tables = scene()
  tracks = link(tables, np.arange(5.0), LinkOptions(max_gap=0))
  t = tracks.table
  before, after = track_of(tracks, 1, 1), track_of(tracks, 3, 1)
  assert before != after
  assert t[(t.track == before) & (t.frame == 1)].event.iloc[0] == "death"
  assert t[(t.frame == 3) & (t.row == 1)].event.iloc[0] == "birth"


def test_the_posterior_widths_not_a_pixel_threshold_decide_a_match():
  """Among 100 still droplets (so the sequence says droplets barely move), the same 3 px
  jump is one droplet when its reads are that uncertain, and two when they are sharp."""
  rng = np.random.default_rng(1)
  still = pd.DataFrame({"x": rng.uniform(100, 1000, 100), "y": rng.uniform(100, 1000, 100),
                        "r": 6.0, "x_sd": 0.05, "y_sd": 0.05, "r_sd": 0.05})
  for sd, same in ((2.0, True), (0.05, False)):
    mover = lambda x: pd.DataFrame([dict(x=x, y=50.0, r=6.0, x_sd=sd, y_sd=sd, r_sd=0.05)])
    tables = [pd.concat([mover(50.0), still], ignore_index=True),
              pd.concat([mover(53.0), still], ignore_index=True)]
    tracks = link(tables, [0.0, 1.0])
    t = tracks.table
    assert tracks.motion.q_xy < 0.01
    assert (t[t.row == 0].track.nunique() == 1) == same


def test_motion_is_learned_from_the_sequence():
  """Droplets jittering by N(0, 0.8 px) per frame and growing at 0.3 px/s: the learned
  position noise and median rate come back (posterior sd 0.1 px removed)."""
  rng = np.random.default_rng(0)
  n, frames = 200, 6
  x0, y0 = rng.uniform(0, 2000, n), rng.uniform(0, 2000, n)
  tables = [pd.DataFrame({"x": x0 + rng.normal(0, 0.8, n), "y": y0 + rng.normal(0, 0.8, n),
                          "r": 5.0 + 0.3 * 2.0 * f + rng.normal(0, 0.05, n),
                          "x_sd": 0.1, "y_sd": 0.1, "r_sd": 0.05}) for f in range(frames)]
  m = learn_motion(tables, 2.0 * np.arange(frames))  # 2 s between frames.
  # Differences of two N(0, 0.8) jitters: variance 1.28 px² per 2 s, minus 2 × 0.01.
  assert m.q_xy == pytest.approx((2 * 0.64 - 0.02) / 2.0, rel=0.15)
  assert m.rate == pytest.approx(0.3, abs=0.01)


def test_too_few_droplets_to_learn_from_move_in_their_own_units():
  """Three droplets of 20 px, 0.01 s apart, drifting 3 px a frame: too few pairs to learn
  motion from, so the fallback must scale with the droplets and the frame interval (a
  fixed 1 px² per second would allow 0.1 px and break every track)."""
  tables = [frame(*[(100.0 + 200 * i + 3 * f, 100.0, 20.0) for i in range(3)])
            for f in range(4)]
  times = 0.01 * np.arange(4)
  m = learn_motion(tables, times)
  assert m.pairs < 10 and m.q_xy == pytest.approx(20.0**2 / 0.01)
  out = link(tables, times).table
  assert out.groupby("track").size().tolist() == [4, 4, 4]


def test_bad_sequences_are_refused_in_one_line():
  one = scene()[:1]
  with pytest.raises(ValueError, match="at least 2 frames"):
    link(one, [0.0])
  with pytest.raises(ValueError, match="increasing"):
    link(scene()[:2], [1.0, 1.0])
  with pytest.raises(ValueError, match="r_sd"):
    link([frame((1, 1, 2)).drop(columns="r_sd")] * 2, [0.0, 1.0])


@pytest.mark.parametrize("grew, seen", [(True, 2), (False, 2), (True, 1)])
def test_a_small_droplet_absorbed_by_a_large_one(grew, seen):
  """A droplet of 1.6 % of its neighbour's volume, read in ``seen`` frames, vanishes into
  it in frame 2, never to return. That is a coalescence either way. If the large
  droplet's read volume grew by about the small one's and the small one was read more
  than once, the merged droplet is a new track (as every merged droplet is); if the read
  shows no growth, or the small droplet was read only once (either could be a spurious
  read beside the large droplet), the event is labelled but the large track goes on."""
  big, small = (100.0, 100.0, 20.0), (124.9, 100.0, 5.0)
  child = merged(big, small) if grew else big
  tables = [frame(big, small, *STILL) if seen == 2 else frame(big, *STILL),
            frame(big, small, *STILL)] + [frame(child, *STILL) for _ in range(4)]
  grew = grew and seen == 2
  tracks = link(tables, np.arange(6.0))
  b, s, c = track_of(tracks, 1, 0), track_of(tracks, 1, 1), track_of(tracks, 2, 0)
  ev = tracks.events[tracks.events.kind == "coalescence"]
  assert len(ev) == 1 and int(ev.frame.iloc[0]) == 2 and int(ev.track.iloc[0]) == c
  assert sorted(int(p) for p in ev.parents.iloc[0].split(";")) == sorted((b, s))
  assert (c != b) == grew
  assert {track_of(tracks, f, 0) for f in range(2, 6)} == {c}
  t = tracks.table
  assert t[(t.track == s) & (t.frame == 1)].event.iloc[0] == "merged"
  assert "death" not in set(tracks.events.kind)


def test_a_split_at_the_frame_a_track_returns_from_a_gap_leaves_no_gap_on_the_new_track():
  """The large droplet is missed in frame 1 and comes back in frame 2 having absorbed the
  small one: its track is split there, and the new track begins with the coalescence; a
  gap on a track's first detection would be meaningless."""
  big, small = (100.0, 100.0, 20.0), (124.9, 100.0, 5.0)
  child = merged(big, small)
  tables = [frame(big, small, *STILL), frame(small, *STILL)] + [
      frame(child, *STILL) for _ in range(4)]
  tracks = link(tables, np.arange(6.0))
  c = track_of(tracks, 2, 0)
  assert c != track_of(tracks, 0, 0)
  ev = tracks.events[tracks.events.frame == 2]
  assert ev.kind.tolist() == ["coalescence"] and int(ev.track.iloc[0]) == c
  t = tracks.table
  assert t[(t.track == c) & (t.frame == 2)].event.iloc[0] == "coalescence"


def test_a_track_split_by_one_absorption_is_named_by_its_later_part_in_the_next():
  """M absorbs a tiny T in frame 2 (M's track is split: a new track goes on), then a large
  G absorbs M in frame 4: that coalescence's parents are G and M's later part."""
  g, m, tiny = (100.0, 100.0, 30.0), (140.2, 100.0, 10.0), (152.5, 100.0, 2.5)
  mt = merged(m, tiny)
  gm = merged(g, (m[0], m[1], mt[2]))
  tables = [frame(g, m, tiny, *STILL)] * 2 + [frame(g, mt, *STILL)] * 2 + [
      frame(gm, *STILL) for _ in range(4)]
  tracks = link(tables, np.arange(8.0))
  m_later = track_of(tracks, 3, 1)
  assert m_later != track_of(tracks, 1, 1)  # Split at the first absorption.
  ev = tracks.events[(tracks.events.kind == "coalescence") & (tracks.events.frame == 4)]
  assert len(ev) == 1
  assert set(int(p) for p in ev.parents.iloc[0].split(";")) >= {m_later}
  assert track_of(tracks, 1, 1) not in set(int(p) for p in ev.parents.iloc[0].split(";"))


def test_a_new_droplet_where_two_vanished_is_a_coalescence_not_also_a_birth():
  """D and E vanish where F, read larger than their volumes allow, appears: F's first row
  is one event, the coalescence."""
  d, e, f_ = (100.0, 50.0, 6.0), (112.0, 50.0, 6.0), (106.0, 50.0, 9.0)
  tables = [frame(d, e, *STILL)] * 2 + [frame(f_, *STILL) for _ in range(4)]
  tracks = link(tables, np.arange(6.0))
  child = track_of(tracks, 2, 0)
  ev = tracks.events[tracks.events.track == child]
  assert list(ev.kind) == ["coalescence"]
  t = tracks.table
  assert t[(t.track == child) & (t.frame == 2)].event.iloc[0] == "coalescence"


def test_non_finite_times_or_reads_are_refused():
  with pytest.raises(ValueError, match="finite"):
    link(scene(), [0.0, 1.0, np.nan, 3.0, 4.0])
  tables = scene()
  tables[1].loc[0, "x_sd"] = np.nan
  with pytest.raises(ValueError, match="frame 1's table has non-finite"):
    link(tables, np.arange(5.0))
