"""droplet_images: a folder with and without annotations, and bad annotation files."""

import numpy as np
import pytest
from PIL import Image

from dropamort.data.images import read_image
from dropamort.datasets import DatasetError, store


@pytest.fixture
def folder(tmp_path):
  rng = np.random.default_rng(0)
  d = tmp_path / "imgs"
  d.mkdir()
  for name, size in (("a.png", (20, 30)), ("b.png", (24, 16))):
    Image.fromarray((rng.random(size + (3,)) * 255).astype(np.uint8)).save(d / name)
  return d


def test_folder_without_annotations(folder, tmp_path):
  builder = store.open_images(str(folder), str(tmp_path / "data"))
  examples = store.read_images(builder)
  assert [e["name"] for e in examples] == ["a.png", "b.png"]
  for e in examples:
    want, _ = read_image(str(folder / e["name"]), 3)
    np.testing.assert_allclose(e["image"], want, atol=1e-7)
    assert not e["annotated"] and e["x"].shape == (0,)


def test_folder_with_annotations_in_the_scaled_frame(folder, tmp_path):
  csv = tmp_path / "labels.csv"
  csv.write_text("image,x,y,r\na.png,10,4,2\na.png,20,8,3\n")
  builder = store.open_images(str(folder), str(tmp_path / "data"), annotations=str(csv),
                              scale=0.5)
  a, b = store.read_images(builder)
  assert a["annotated"] and not b["annotated"]
  assert a["image"].shape == (10, 15, 3)
  np.testing.assert_allclose(np.stack([a["x"], a["y"], a["r"]], 1), [[5, 2, 1], [10, 4, 1.5]])


def test_changed_annotations_build_a_new_set(folder, tmp_path):
  csv = tmp_path / "labels.csv"
  csv.write_text("image,x,y,r\na.png,10,4,2\n")
  first = store.open_images(str(folder), str(tmp_path / "data"), annotations=str(csv))
  csv.write_text("image,x,y,r\na.png,11,4,2\n")
  second = store.open_images(str(folder), str(tmp_path / "data"), annotations=str(csv))
  assert first.data_dir != second.data_dir
  assert store.read_images(second)[0]["x"].tolist() == [11.0]


@pytest.mark.parametrize("text, message", [
    ("image,x,y\na.png,1,2\n", "lacks column"),
    ("image,x,y,r\nzzz.png,1,2,3\n", "not in the folder"),
    ("image,x,y,r\na.png,1,2,-1\n", "r > 0"),
    ("x,y,r\n1,2,3\n", "needs an 'image' column"),
])
def test_bad_annotations(folder, tmp_path, text, message):
  csv = tmp_path / "labels.csv"
  csv.write_text(text)
  with pytest.raises(DatasetError, match=message):
    store.open_images(str(folder), str(tmp_path / "data"), annotations=str(csv))


def test_missing_folder_or_annotation_file(folder, tmp_path):
  with pytest.raises(DatasetError, match="no such image file or folder"):
    store.open_images(str(tmp_path / "nothing"), str(tmp_path / "data"))
  with pytest.raises(DatasetError, match="annotation file not found"):
    store.open_images(str(folder), str(tmp_path / "data"), annotations="missing.csv")
