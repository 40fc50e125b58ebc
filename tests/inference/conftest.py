import numpy as np
import pytest
from PIL import Image


@pytest.fixture
def image_folder(tmp_path):
  """Two good images and one bad one."""
  rng = np.random.default_rng(0)
  folder = tmp_path / "images"
  folder.mkdir()
  for name in ("a.png", "b.jpg"):
    Image.fromarray((rng.random((40, 52, 3)) * 255).astype(np.uint8)).save(folder / name)
  (folder / "c.png").write_bytes(b"not an image")
  return folder
