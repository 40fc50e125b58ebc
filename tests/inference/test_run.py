import html.parser
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pandas as pd
import pytest

import dropamort
from dropamort.read_config import InferConfig
from dropamort.inference.catalog_table import droplet_table
from dropamort.checkpoint import CheckpointError
from dropamort.inference.run import run

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OPTS = InferConfig(samples=20, progress=False)


def test_api_infers_without_touching_files_and_its_table_is_the_posterior(checkpoint,
                                                                          tmp_path,
                                                                          monkeypatch):
  """One level: the table, by hand from the encoder's posterior, is one row per cell with
  p > 0.5 whose droplet is centred in the image (overlapping discs resolved): x = (col + sigmoid(loc)) · cell, r and
  its 90% interval exp(loc), exp(loc ± 1.645 · scale) (the model is uncalibrated: no
  widening, no edge map). Nothing is written."""
  monkeypatch.chdir(tmp_path)
  reader = dropamort.load(checkpoint)
  image = np.random.default_rng(1).random((30, 42, 3)).astype(np.float32)
  result = reader.infer(image, InferConfig(samples=20, levels=1, progress=False))
  assert list(tmp_path.iterdir()) == []
  assert result.summary["analysed_size"] == [30, 42]
  post = jax.tree.map(np.asarray, result.posterior)
  sig = lambda v: 1 / (1 + np.exp(-v))
  col, row = np.meshgrid(np.arange(11), np.arange(8))
  x = (col + sig(post.offset_loc_BYX2[0, :8, :11, 0])) * 4
  y = (row + sig(post.offset_loc_BYX2[0, :8, :11, 1])) * 4
  loc, scale = post.logr_loc_BYX[0, :8, :11], post.logr_scale_BYX[0, :8, :11]
  on = (post.p_BYX[0, :8, :11] > 0.5) & (x < 42) & (y < 30)
  z = 1.6448536
  want = pd.DataFrame({"x": x[on], "y": y[on], "r": np.exp(loc[on]),
                       "r_q05": np.exp(loc[on] - z * scale[on]),
                       "r_q95": np.exp(loc[on] + z * scale[on]),
                       "p": post.p_BYX[0, :8, :11][on]})
  got = result.table
  # Hard core: the rows are those cells, less the ones whose disc overlaps a row's.
  key = lambda t: [tuple(v) for v in np.round(t[["x", "y"]].to_numpy(), 4)]
  listed = set(key(got))
  mine = np.array([k in listed for k in key(want)])
  assert len(got) > 0 and mine.sum() == len(got)
  kept, dropped = want[mine].sort_values(["x", "y"]), want[~mine]
  got = got.sort_values(["x", "y"])
  for k in want:
    np.testing.assert_allclose(got[k].to_numpy(), kept[k].to_numpy(), rtol=1e-5, err_msg=k)
  for _, d in dropped.iterrows():
    assert np.any(np.hypot(kept["x"] - d["x"], kept["y"] - d["y"]) < kept["r"] + d["r"])
  assert {"composition_1", "x_sd"} <= set(result.table)


def test_count_interval_is_the_poisson_binomial_of_the_cells(checkpoint):
  """The summary's 90% interval of the droplet count against an independent Monte Carlo
  of the sum of the cells' Bernoulli(p)."""
  reader = dropamort.load(checkpoint)
  image = np.random.default_rng(4).random((30, 42, 3)).astype(np.float32)
  result = reader.infer(image, InferConfig(samples=2000, levels=1, progress=False))
  p = np.asarray(result.candidates["p"])  # Every cell with p >= 0.01, all levels.
  counts = (np.random.default_rng(0).random((20000, p.size)) < p).sum(1)
  want = np.quantile(counts, [0.05, 0.95])
  sd = np.sqrt(np.sum(p * (1 - p)))
  np.testing.assert_allclose(result.summary["count"]["ci90"], want, atol=1 + 0.1 * sd)
  # One level (levels=1): the candidates are the cells with p >= 0.01 whose droplet is
  # centred in the image (not in the padding to whole cells).
  assert len(result.levels) == 1
  post = result.posterior
  col, row = np.meshgrid(np.arange(11), np.arange(8))
  x = (col + 1 / (1 + np.exp(-np.asarray(post.offset_loc_BYX2[0, :8, :11, 0])))) * 4
  y = (row + 1 / (1 + np.exp(-np.asarray(post.offset_loc_BYX2[0, :8, :11, 1])))) * 4
  every = np.asarray(post.p_BYX[0, :8, :11])
  np.testing.assert_allclose(p.sum(), every[(every >= 0.01) & (x < 42) & (y < 30)].sum(),
                             rtol=1e-5)


def test_table_coordinates_scale_back_to_the_original_frame(checkpoint):
  reader = dropamort.load(checkpoint)
  image = np.random.default_rng(2).random((64, 80, 3)).astype(np.float32)
  small = reader.infer(image, InferConfig(scale=0.5, samples=20, threshold=0.05))
  raw = droplet_table(small.candidates, threshold=0.05, ratio_xy=(1.0, 1.0))
  assert len(raw) == len(small.table) > 0
  np.testing.assert_allclose(small.table["x"], raw["x"] * 2.0, rtol=1e-6)
  np.testing.assert_allclose(small.table["y"], raw["y"] * 2.0, rtol=1e-6)
  np.testing.assert_allclose(small.table["r"], raw["r"] * 2.0, rtol=1e-6)
  assert small.summary["image_size"] == [64, 80] and small.summary["analysed_size"] == [32, 40]


def test_folder_mode_skips_the_bad_file(checkpoint, image_folder, tmp_path, capsys):
  out = tmp_path / "out"
  out.mkdir()
  failed = run(dropamort.load(checkpoint), str(image_folder), str(out), OPTS)
  assert failed == 1
  assert "c.png: not a readable image" in capsys.readouterr().err
  assert sorted(os.listdir(out)) == [
      "a.png", "b.jpg", "catalog_all.csv", "catalog_all.parquet", "report.html", "run.json",
      "size_distribution_all.png", "summary_all.csv"]
  for name in ("a.png", "b.jpg"):
    files = set(os.listdir(out / name))
    assert files == {"catalog.csv", "catalog.parquet", "summary.json", "overlay.png",
                     "reconstruction.png", "residual.png", "size_distribution.png"}
    csv = pd.read_csv(out / name / "catalog.csv")
    pq = pd.read_parquet(out / name / "catalog.parquet")
    np.testing.assert_allclose(csv["x"], pq["x"], rtol=1e-6)
    summary = json.loads((out / name / "summary.json").read_text())
    assert summary["image_size"] == [40, 52] and "reconstruction_rmse" in summary
  combined = pd.read_csv(out / "catalog_all.csv")
  assert set(combined["image"]) <= {"a.png", "b.jpg"}
  rows = pd.read_csv(out / "summary_all.csv")
  assert list(rows["image"]) == ["a.png", "b.jpg"] and {"count", "coverage", "D50_px"} <= set(rows)


class _Links(html.parser.HTMLParser):
  def __init__(self):
    super().__init__()
    self.links = []

  def handle_starttag(self, tag, attrs):
    self.links += [v for k, v in attrs if k in ("href", "src")]


def test_the_folder_report_links_only_to_files_that_exist(checkpoint, image_folder, tmp_path):
  out = tmp_path / "out"
  out.mkdir()
  run(dropamort.load(checkpoint), str(image_folder), str(out),
      InferConfig(samples=20, progress=False, pixel_size=0.5))
  parser = _Links()
  parser.feed((out / "report.html").read_text())
  assert len(parser.links) >= 2 * 8  # Thumbnail, its link and six outputs per image.
  missing = [link for link in parser.links if not (out / link).is_file()]
  assert missing == []
  assert {"a.png/overlay.png", "b.jpg/size_distribution.png", "summary_all.csv",
          "size_distribution_all.png"} <= set(parser.links)
  table = pd.read_csv(out / "a.png" / "catalog.csv")
  np.testing.assert_allclose(table["r_um"], table["r"] * 0.5, rtol=1e-6)
  np.testing.assert_allclose(table["x_um_q95"], table["x_q95"] * 0.5, rtol=1e-6)
  summary = json.loads((out / "a.png" / "summary.json").read_text())
  assert summary["pixel_size_um"] == 0.5 and "number_density_per_mm2" in summary["lab"]


def test_checkpoint_errors(tmp_path):
  with pytest.raises(CheckpointError, match="no such checkpoint"):
    dropamort.load(str(tmp_path / "missing"))
  (tmp_path / "empty").mkdir()
  with pytest.raises(CheckpointError, match="not a dropamort checkpoint"):
    dropamort.load(str(tmp_path / "empty"))
  broken = tmp_path / "broken" / "7"
  broken.mkdir(parents=True)
  (broken / "state").mkdir()
  (broken / "state" / "garbage").write_text("x")
  with pytest.raises(CheckpointError, match="unreadable checkpoint"):
    dropamort.load(str(tmp_path / "broken"))


def infer_cli(*args, cwd):
  return subprocess.run([sys.executable, os.path.join(ROOT, "infer.py"), *args], cwd=cwd,
                        capture_output=True, text=True, timeout=300)


def test_cli_bad_inputs_give_one_line_and_no_outputs(checkpoint, image_folder, tmp_path):
  out = tmp_path / "cli"
  p = infer_cli(f"image={image_folder}/c.png", f"checkpoint={checkpoint}",
                f"hydra.run.dir={out}", cwd=tmp_path)
  assert p.returncode == 1
  assert p.stderr.strip().splitlines()[0].startswith("dropamort: error: ")
  assert "c.png: not a readable image" in p.stderr
  assert not (out / "c.png").exists() and not any(n.endswith(".partial") for n in os.listdir(out))
  p = infer_cli(f"image={image_folder}/a.png", f"checkpoint={tmp_path}/none",
                f"hydra.run.dir={out}", cwd=tmp_path)
  assert p.returncode == 2 and p.stderr.strip().count("\n") == 0
  assert "no such checkpoint" in p.stderr
  # No runs/: the bundled model reads the images, saying so in one line.
  p = infer_cli(f"image={image_folder}/a.png", f"hydra.run.dir={out}", "infer.samples=20",
                cwd=tmp_path)
  assert p.returncode == 0, p.stderr
  assert [line for line in p.stderr.splitlines() if line.startswith("dropamort:")] == [
      "dropamort: no trained model found; using the bundled model calibrated on the example "
      "image (checkpoint=example); a model calibrated on your own images reads them better: "
      "python train.py data.real=YOUR_FOLDER"]
  assert (out / "a.png" / "catalog.csv").exists()
  p = infer_cli(f"checkpoint={checkpoint}", f"hydra.run.dir={out}", cwd=tmp_path)
  assert p.returncode == 2 and "image=PATH is required" in p.stderr


def test_failure_while_writing_leaves_no_partial_outputs(checkpoint, image_folder, tmp_path,
                                                        monkeypatch, capsys):
  from dropamort.inference import pictures

  def broken(*args, **kwargs):
    raise OSError("disk full")

  monkeypatch.setattr(pictures, "save_residual", broken)
  out = tmp_path / "out"
  out.mkdir()
  failed = run(dropamort.load(checkpoint), str(image_folder / "a.png"), str(out), OPTS)
  assert failed == 1
  assert "a.png: failed (OSError: disk full)" in capsys.readouterr().err
  assert os.listdir(out) == []  # Neither the image's folder nor a .partial one.


def test_zero_size_and_wrong_channel_images(checkpoint, tmp_path, capsys):
  import tifffile

  import warnings

  with warnings.catch_warnings():  # tifffile warns about writing an empty image.
    warnings.simplefilter("ignore")
    tifffile.imwrite(tmp_path / "zero.tif", np.zeros((0, 5), np.uint8))
  tifffile.imwrite(tmp_path / "five.tif", np.zeros((8, 8, 5), np.uint8),
                   photometric="minisblack", planarconfig="contig")
  out = tmp_path / "out"
  out.mkdir()
  failed = run(dropamort.load(checkpoint), str(tmp_path / "*.tif"), str(out), OPTS)
  err = capsys.readouterr().err
  assert failed == 2 and os.listdir(out) == []
  assert "five.tif: has 5 channels; the model takes 3" in err
  assert "zero.tif" in err
