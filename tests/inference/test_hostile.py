"""Hostile inputs: every one ends in one clear line (or a correct result), no partial
outputs, and nothing hangs. Folder mode reads them all in one run."""

import io
import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import tifffile
from PIL import Image

import dropamort
from dropamort.read_config import InferConfig
from dropamort.data.images import ImageError, find_images, read_image
from dropamort.inference.run import run

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OPTS = InferConfig(samples=20, progress=False, pictures=False)


def _encoded(fmt: str, shape=(24, 24, 3)) -> bytes:
  buf = io.BytesIO()
  rng = np.random.default_rng(0)
  Image.fromarray((rng.random(shape) * 255).astype(np.uint8)).save(buf, format=fmt)
  return buf.getvalue()


def _tiff(array) -> bytes:
  buf = io.BytesIO()
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    tifffile.imwrite(buf, array)
  return buf.getvalue()


# name -> (file bytes, fragment of the one-line error; None: must be read correctly)
BAD = {
    "random.jpg": (np.random.default_rng(1).bytes(2000), "not a readable image"),
    "random.png": (np.random.default_rng(2).bytes(2000), "not a readable image"),
    "random.tif": (np.random.default_rng(3).bytes(2000), "not a readable TIFF"),
    "cut.jpg": (_encoded("JPEG")[:300], "not a readable image"),
    "cut.png": (_encoded("PNG")[:300], "not a readable image"),
    "cut.tif": (_tiff(np.zeros((64, 64, 3), np.uint8))[:500], "not a readable TIFF"),
    "nan.tif": (_tiff(np.full((16, 16, 3), np.nan, np.float32)), "finite"),
    "inf.tif": (_tiff(np.where(np.eye(16)[..., None] > 0, np.inf, 0.5).astype(np.float32)
                      * np.ones(3, np.float32)), "finite"),
    "empty.png": (b"", "not a readable image"),
}
GOOD = {
    "one_pixel.png": _encoded("PNG", (1, 1, 3)),
    "zeros16.tif": _tiff(np.zeros((20, 20), np.uint16)),
}


@pytest.fixture
def hostile(tmp_path):
  d = tmp_path / "hostile in ü"
  d.mkdir()
  for name, (data, _) in BAD.items():
    (d / name).write_bytes(data)
  for name, data in GOOD.items():
    (d / name).write_bytes(data)
  os.symlink(d / "loop.png", d / "loop.png")  # A symlink to itself.
  os.symlink(d, d / "sub.tif")  # A folder link named like an image, pointing back up.
  return d


@pytest.mark.parametrize("name", sorted(BAD))
def test_reader_names_the_file_and_the_problem(hostile, name):
  with pytest.raises(ImageError) as err:
    read_image(str(hostile / name), 3)
  message = str(err.value)
  assert message.startswith(str(hostile / name)) and BAD[name][1] in message
  assert "\n" not in message


def test_reader_reads_the_odd_but_valid_ones(hostile):
  one, _ = read_image(str(hostile / "one_pixel.png"), 3)
  assert one.shape == (1, 1, 3)
  zeros, notes = read_image(str(hostile / "zeros16.tif"), 3)
  assert zeros.shape == (20, 20, 3) and zeros.max() == 0 and notes
  with pytest.raises(ImageError, match="broken symbolic link"):
    read_image(str(hostile / "loop.png"), 3)
  with pytest.raises(ImageError, match="is a folder"):
    read_image(str(hostile / "sub.tif"), 3)


def test_a_symlink_loop_does_not_hang_a_glob(hostile):
  paths = find_images(str(hostile / "**" / "*.png"))
  assert str(hostile / "one_pixel.png") in paths


def test_folder_run_reports_each_bad_file_and_reads_the_rest(checkpoint, hostile, tmp_path,
                                                             capsys):
  out = tmp_path / "out"
  out.mkdir()
  failed = run(dropamort.load(checkpoint), str(hostile), str(out), OPTS)
  err = capsys.readouterr().err
  assert failed == len(BAD) + 1  # + the self-link; sub.tif is a folder and not listed.
  assert "loop.png: a broken symbolic link" in err
  for name, (_, fragment) in BAD.items():
    assert f"{name}: " in err and fragment in err, name
  assert sorted(os.listdir(out)) == sorted(["catalog_all.csv", "catalog_all.parquet",
                                            "report.html", "run.json",
                                            "size_distribution_all.png",
                                            "summary_all.csv", *GOOD])
  stats = json.loads((out / "run.json").read_text())
  assert (stats["images"], stats["failed"]) == (len(GOOD), failed)
  for name in GOOD:
    assert (out / name / "summary.json").exists()
  assert not any(n.endswith(".partial") for n in os.listdir(out))


def test_a_very_long_thin_image_is_read_in_tiles(checkpoint, tmp_path):
  image = np.full((10, 100_000, 3), 0.6, np.float32)
  result = dropamort.load(checkpoint, tile=64, overlap=2).infer(image, OPTS)
  assert result.summary["analysed_size"] == [10, 100_000]
  assert np.all(result.table["x"] < 100_000) and np.all(result.table["y"] < 10)


@pytest.mark.parametrize("args, fragment", [
    # Hydra's override grammar needs quotes around a value with spaces.
    (["image='/no/such dir/ünïcode file.png'"], "/no/such dir/ünïcode file.png: no such file"),
    (["image=x.png", "infer.scale=big"], "infer.scale"),
])
def test_cli_paths_and_wrong_types(checkpoint, tmp_path, args, fragment):
  p = subprocess.run([sys.executable, os.path.join(ROOT, "infer.py"), *args,
                      f"checkpoint={checkpoint}", f"hydra.run.dir={tmp_path}/run"],
                     cwd=tmp_path, capture_output=True, text=True, timeout=300)
  assert p.returncode != 0 and fragment in p.stderr, p.stderr
  left = os.listdir(tmp_path / "run") if (tmp_path / "run").exists() else []
  assert set(left) <= {".hydra", "infer.log"}  # Hydra's own; no outputs of ours.
