import numpy as np
import pytest
from PIL import Image

from dropamort.config import DataConfig
from dropamort.data.images import ImageError
from dropamort.data.real import load_real, random_crops


def save(path, shape, value=100):
  Image.fromarray(np.full(shape, value, np.uint8)).save(path)


def test_reads_scales_and_cuts_columns(tmp_path):
  save(tmp_path / "a.png", (80, 120, 3))
  (images,) = load_real(DataConfig(real=str(tmp_path), scale=0.5, columns=(0.0, 0.5)), 3,
                        (32, 24))
  assert images.shape == (40, 30, 3)
  crops = random_crops(np.random.default_rng(0), [images], 5, (32, 24))
  assert crops.shape == (5, 32, 24, 3)
  np.testing.assert_allclose(crops, 100 / 255, atol=1e-6)


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


def test_bundled_example_model_loads():
  import dropamort

  reader = dropamort.load("example")
  assert reader.cfg.model.channels == 3 and reader.cfg.data.scale == 0.25
  assert reader.cfg.model.noise_sigma < 0.05  # Fitted by the wake phase.
