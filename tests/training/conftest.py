import pytest

from dropamort.config import EncoderConfig, ModelConfig, TrainConfig, TrainerConfig


@pytest.fixture
def tiny_cfg():
  """Seconds-sized training: 16×16 images, a small encoder, 6 steps."""
  return TrainConfig(
      model=ModelConfig(height=16, width=16, radius_max=4.0),
      encoder=EncoderConfig(stem=4, width=8, depth=2),
      trainer=TrainerConfig(steps=6, batch_size=4, val_every=3, val_images=8,
                            checkpoint_every=3, log_every=1, progress=False))

