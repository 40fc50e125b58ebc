import numpy as np
import pytest
from PIL import Image

from dropamort.config import EncoderConfig, ModelConfig, TrainConfig, TrainerConfig
from dropamort.training.loop import train


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory):
  """A briefly trained tiny model (its quality does not matter here, its plumbing does)."""
  cfg = TrainConfig(
      model=ModelConfig(height=16, width=16, radius_max=4.0),
      encoder=EncoderConfig(stem=4, width=8, depth=2),
      trainer=TrainerConfig(steps=4, batch_size=4, val_every=2, val_images=4,
                            checkpoint_every=2, progress=False))
  run = tmp_path_factory.mktemp("run")
  train(cfg, str(run))
  return str(run)


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
