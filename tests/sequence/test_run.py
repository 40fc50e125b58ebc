"""``infer.py infer.sequence=true``: the outputs agree with linking the frames' own
catalogs, and bad sequences stop with one line and leave nothing behind."""

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import dropamort
from dropamort.read_config import InferConfig
from dropamort.sequence.link import link
from dropamort.sequence import run as seq_run
from dropamort.sequence.run import SequenceError, natural_key, run_sequence

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OPTS = InferConfig(samples=20, progress=False, sequence=True, frame_interval_s=2.0,
                   pixel_size=0.5)


def frames(folder, n=4, size=(40, 56), names=None):
  """``n`` JPEG frames of one slowly changing random scene, named frame_1 ... frame_n."""
  rng = np.random.default_rng(0)
  base = rng.random((*size, 3))
  os.makedirs(folder, exist_ok=True)
  names = names or [f"frame_{i + 1}.png" for i in range(n)]
  for i, name in enumerate(names):
    im = np.clip(base + 0.02 * rng.standard_normal(base.shape), 0, 1)
    Image.fromarray((255 * im).astype(np.uint8)).save(os.path.join(folder, name))
  return folder


def test_natural_order():
  names = ["f10.png", "f2.png", "f1.png"]
  assert sorted(names, key=natural_key) == ["f1.png", "f2.png", "f10.png"]


def test_the_tracks_are_the_frames_catalogs_linked(checkpoint, tmp_path, monkeypatch):
  """Frames named frame_1 ... frame_12 (natural order, not string order): tracks.csv is
  ``link`` of the catalogs the run wrote, at 2 s per frame; growth.csv holds the tracks
  of at least 3 frames; sequence.json and the report say what was found, and
  sequence.json is the last output moved into place (its presence marks a complete run)."""
  src = frames(str(tmp_path / "in"), names=[f"frame_{i}.png" for i in (1, 2, 10, 11, 12)])
  out = str(tmp_path / "out")
  os.makedirs(out)
  reader = dropamort.load(checkpoint)
  moved, replace = [], os.replace
  monkeypatch.setattr(seq_run.os, "replace", lambda a, b: (moved.append(b), replace(a, b)))
  assert run_sequence(reader, src, out, OPTS) == 0
  assert os.path.basename(moved[-1]) == "sequence.json" and len(moved) > 5
  order = ["frame_1.png", "frame_2.png", "frame_10.png", "frame_11.png", "frame_12.png"]
  tables = [pd.read_parquet(os.path.join(out, n, "catalog.parquet")) for n in order]
  expected = link(tables, 2.0 * np.arange(5)).table
  got = pd.read_csv(os.path.join(out, "tracks.csv"))
  assert list(got["image"].unique()) == [n for n, t in zip(order, tables) if len(t)]
  np.testing.assert_allclose(got["time_s"], expected["time_s"])
  np.testing.assert_array_equal(got["track"], expected["track"])
  np.testing.assert_allclose(got[["x", "y", "r", "x_um", "r_um"]],
                             expected[["x", "y", "r", "x_um", "r_um"]], rtol=1e-6)
  assert len(got) == sum(len(t) for t in tables)
  growth = pd.read_csv(os.path.join(out, "growth.csv"))
  per_track = got.groupby("track").size()
  assert set(growth["track"]) == set(per_track[per_track >= 3].index)
  assert "drdt_um_per_s" in growth.columns and "heat_uW" in growth.columns
  with open(os.path.join(out, "sequence.json")) as f:
    summary = json.load(f)
  assert summary["tracks"] == got["track"].nunique() and summary["time_unit"] == "s"
  assert summary["heat_flux"]["area_um2"] == pytest.approx(40 * 56 * 0.25)
  with open(os.path.join(out, "report.html")) as f:
    assert "<h2>Sequence</h2>" in f.read()
  for name in ("tracks.parquet", "events.csv", "tracks.png", "growth.png"):
    assert os.path.exists(os.path.join(out, name)), name
  assert not [n for n in os.listdir(out) if n.startswith(".")]


@pytest.mark.parametrize("case", ["single", "sizes", "unreadable", "times", "nan_time"])
def test_bad_sequences_are_refused_and_leave_nothing(checkpoint, tmp_path, case):
  src = str(tmp_path / "in")
  opts = OPTS
  if case == "single":
    frames(src, n=1)
    match = "at least 2 frames"
  elif case == "sizes":
    frames(src, n=3)
    frames(src, names=["frame_4.png"], size=(40, 60))
    match = "frames differ in size.*56x40.*60x40"
  elif case == "unreadable":
    frames(src, n=4)
    with open(os.path.join(src, "frame_1.png"), "rb") as f:
      head = f.read()[:60]
    with open(os.path.join(src, "frame_2.png"), "wb") as f:  # A valid header, no pixels.
      f.write(head)
    match = "a frame could not be read"
  else:
    frames(src, n=3)
    pd.DataFrame({"image": ["frame_1.png", "frame_2.png"], "time_s": [0, 1]}).to_csv(
        tmp_path / "times.csv", index=False)
    opts = InferConfig(**{**OPTS.__dict__, "frame_times": str(tmp_path / "times.csv")})
    match = "no time for frame_3.png"
  if case == "nan_time":
    pd.DataFrame({"image": ["frame_1.png", "frame_2.png", "frame_3.png"],
                  "time_s": [0, None, 2]}).to_csv(tmp_path / "times.csv", index=False)
    match = "a time_s is empty or not finite"
  out = str(tmp_path / "out")
  os.makedirs(out)
  with pytest.raises(SequenceError, match=match):
    run_sequence(dropamort.load(checkpoint), src, out, opts)
  assert os.listdir(out) == []


def test_the_cli_says_one_line_and_exits_non_zero(checkpoint, tmp_path):
  src = frames(str(tmp_path / "in"), n=1)
  proc = subprocess.run([sys.executable, os.path.join(ROOT, "infer.py"), f"image={src}",
                         f"checkpoint={checkpoint}", "infer.sequence=true",
                         f"hydra.run.dir={tmp_path / 'out'}"], capture_output=True, text=True,
                        cwd=str(tmp_path))
  assert proc.returncode != 0
  errors = [l for l in proc.stderr.splitlines() if "error" in l.lower()]
  assert len(errors) == 1 and "at least 2 frames" in errors[0], proc.stderr
  # Only Hydra's own record of the run (.hydra/, infer.log) is there.
  assert not [n for n in os.listdir(tmp_path / "out") if n not in (".hydra", "infer.log")]


def test_frame_times_match_full_paths_when_file_names_repeat(tmp_path):
  """Frames a/f.png and b/f.png: the CSV's full paths tell them apart; file names alone
  would not, and are then not used."""
  from dropamort.sequence.run import frame_times

  for sub in ("a", "b"):
    frames(str(tmp_path / sub), names=["f.png"])
  paths = [str(tmp_path / "a" / "f.png"), str(tmp_path / "b" / "f.png")]
  csv = tmp_path / "times.csv"
  pd.DataFrame({"image": paths, "time_s": [5.0, 1.0]}).to_csv(csv, index=False)
  ordered, t, seconds = frame_times(paths, InferConfig(frame_times=str(csv)))
  assert ordered == paths[::-1] and list(t) == [1.0, 5.0] and seconds
  pd.DataFrame({"image": ["f.png", "f.png"], "time_s": [5.0, 1.0]}).to_csv(csv, index=False)
  with pytest.raises(SequenceError, match="no time for f.png"):
    frame_times(paths, InferConfig(frame_times=str(csv)))


def test_growth_picture_with_a_single_rated_track(tmp_path):
  from dropamort.sequence.growth import growth_rates
  from dropamort.sequence.pictures import save_growth

  t = pd.DataFrame({"track": 0, "time_s": [0.0, 1.0, 2.0], "r": [3.0, 3.5, 4.0],
                    "r_sd": 0.1})
  save_growth(str(tmp_path / "g.png"), t, growth_rates(t), pixel_size=None, seconds=True)
  assert (tmp_path / "g.png").stat().st_size > 0


def test_tracks_picture_circles_the_droplets_of_the_frame_it_shows(tmp_path, monkeypatch):
  """The picture shows the last frame; when that frame has no detections, no circles of an
  earlier frame are drawn over it."""
  import dropamort.figures
  from dropamort.sequence.pictures import save_tracks

  drawn = []
  monkeypatch.setattr(dropamort.figures, "draw_catalog", lambda ax, t, **kw: drawn.append(t))
  t = pd.DataFrame({"track": [0, 0, 1], "frame": [0, 1, 1], "x": [5.0, 6.0, 20.0],
                    "y": [5.0, 5.0, 20.0], "r": [2.0, 2.0, 3.0]})
  events = pd.DataFrame(columns=["frame", "track", "parents", "kind"])
  image = np.zeros((32, 32, 3))
  save_tracks(str(tmp_path / "a.png"), image, t, events, frame=2)
  save_tracks(str(tmp_path / "b.png"), image, t, events, frame=1)
  assert [len(d) for d in drawn] == [0, 2]
