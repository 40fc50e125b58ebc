import os

import numpy as np
import pytest
from PIL import Image

from dropamort.config import DataConfig
from dropamort.data.images import ImageError
from dropamort.data.real import (crop_positions, held_out_paths, load_real,
                                 split_holdout)


def save(path, shape, value=100):
  Image.fromarray(np.full(shape, value, np.uint8)).save(path)


def test_reads_scales_and_cuts_columns(tmp_path):
  save(tmp_path / "a.png", (80, 120, 3))
  (images,) = load_real(DataConfig(real=str(tmp_path), scale=0.5, columns=(0.0, 0.5)), 3,
                        (32, 24))
  assert images.shape == (40, 30, 3)
  np.testing.assert_allclose(images, 100 / 255, atol=1e-6)


def test_at_most_max_images_are_read_evenly_spaced_by_name(tmp_path):
  """Seven images (values 0-6) and max_images=4: the 1st, 3rd, 5th and 7th by name,
  i.e. round(i · 6 / 3); held out (every 5th of those, at least one): the last. All
  seven when the cap is null or not reached."""
  for i in range(7):
    save(tmp_path / f"im{i}.png", (8, 8, 3), value=10 * i)
  cfg = DataConfig(real=str(tmp_path), max_images=4)
  images = load_real(cfg, 3, (4, 4))
  assert [round(float(im[0, 0, 0]) * 255) for im in images] == [0, 20, 40, 60]
  assert [p.rsplit("/", 1)[-1] for p in held_out_paths(cfg, 0.2)] == ["im6.png"]
  assert len(load_real(DataConfig(real=str(tmp_path), max_images=None), 3, (4, 4))) == 7
  assert len(load_real(DataConfig(real=str(tmp_path), max_images=7), 3, (4, 4))) == 7
  (one,) = load_real(DataConfig(real=str(tmp_path), max_images=1), 3, (4, 4))
  assert round(float(one[0, 0, 0]) * 255) == 0
  assert held_out_paths(DataConfig(real=str(tmp_path), max_images=1), 0.2) == []
  with pytest.raises(ValueError, match="data.max_images"):
    DataConfig(real=str(tmp_path), max_images=0)


def test_holdout_split_is_by_image_or_by_columns():
  images = [np.full((8, 8, 3), i, np.float32) for i in range(12)]
  fitted, held = split_holdout(images, 0.2, min_width=4)
  assert [int(im[0, 0, 0]) for im in held] == [4, 9]  # Every 5th image.
  assert len(fitted) == 10 and all(int(im[0, 0, 0]) not in (4, 9) for im in fitted)
  fitted, held = split_holdout(images[:3], 0.2, min_width=4)
  assert [int(im[0, 0, 0]) for im in held] == [2]  # Fewer than 5: the last one.
  one = np.arange(10 * 50 * 3, dtype=np.float32).reshape(10, 50, 3)
  (fitted,), (held,) = split_holdout([one], 0.2, min_width=32)
  np.testing.assert_array_equal(np.concatenate([fitted, held], 1), one)
  assert held.shape[1] == 10
  with pytest.raises(ImageError, match="too narrow"):
    split_holdout([one], 0.2, min_width=48)


def test_crop_positions_are_uniform_and_follow_the_key():
  import jax

  grids = [(10, 10), (4, 4)]  # 64 and 4 positions for 3×3-cell crops.
  which, row, col = crop_positions(jax.random.key(0), grids, 20000, 3)
  np.testing.assert_allclose(np.mean(which == 1), 4 / 68, atol=0.006)
  first = which == 0
  assert row[first].max() == 7 and col[first].max() == 7 and row.min() == 0
  np.testing.assert_allclose(np.bincount(row[first], minlength=8) / first.sum(), 1 / 8,
                             atol=0.015)
  again = crop_positions(jax.random.key(0), grids, 20000, 3)
  for a, b in zip((which, row, col), again):
    np.testing.assert_array_equal(a, b)


def test_bad_real_data_fails_clearly(tmp_path):
  (tmp_path / "x.png").write_bytes(b"junk")
  with pytest.raises(ImageError, match="no readable image"):
    load_real(DataConfig(real=str(tmp_path)), 3, (32, 32))
  save(tmp_path / "rgb.png", (64, 64, 3))
  save(tmp_path / "grey.png", (64, 64))
  with pytest.raises(ImageError, match="mixed channel counts"):
    load_real(DataConfig(real=str(tmp_path)), 3, (32, 32))
  (tmp_path / "grey.png").unlink()
  with pytest.raises(ImageError, match="training crop is 64×64"):
    load_real(DataConfig(real=str(tmp_path), scale=0.25), 3, (64, 64))


def test_the_bundled_model_reads_its_microscope_as_documented():
  """The bundled model was calibrated on ../shared/data/example.jpg at data.scale=0.25.
  On a quarter of that image it reads at that scale (no infer.scale given), finds the
  droplet density the README states for the whole image (1093 per mm² at 1 µm per px)
  to within 10%, and its render of what it found leaves a residual near its fitted noise
  level, far below the image's own spread about its mean colour."""
  import dropamort
  from dropamort.read_config import InferConfig
  from dropamort.data.images import read_image

  example = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data",
                         "example.jpg")
  if not os.path.exists(example):
    pytest.skip("../shared/data/example.jpg is not here")
  reader = dropamort.load("example")
  image, _ = read_image(example, 3)
  quarter = image[:760, :1014]
  result = reader.infer(quarter, InferConfig(samples=20, pixel_size=1.0, progress=False))
  assert result.summary["scale"] == 0.25 and result.summary["analysed_size"] == [190, 254]
  density = result.summary["lab"]["number_density_per_mm2"]["median"]
  assert density == pytest.approx(1093, rel=0.1)  # 1043 when written.
  base = result.image
  residual = np.sqrt(np.mean((reader.reconstruction(result, 0.5) - base) ** 2))
  flat = np.sqrt(np.mean((base - base.mean((0, 1))) ** 2))
  sigma = float(reader.predictor.prior.noise_sigma)
  assert 0.5 * sigma < residual < sigma < flat  # 0.0246, 0.0347, 0.0710 when written.


def test_crop_chances_weight_the_images():
  """Two grids with as many positions, chances 1 and 4 (a level twice as coarse, by
  area): a fifth and four fifths of the crops; without chances, half each."""
  import jax

  grids = [(10, 10), (10, 10)]
  which, _, _ = crop_positions(jax.random.key(3), grids, 20000, 3, chance=[1, 4])
  assert abs((which == 1).mean() - 0.8) < 0.015
  which, _, _ = crop_positions(jax.random.key(3), grids, 20000, 3)
  assert abs((which == 1).mean() - 0.5) < 0.015
