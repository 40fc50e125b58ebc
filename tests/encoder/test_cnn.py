import jax
import jax.numpy as jnp
import numpy as np

from dropamort.config import EncoderConfig
from dropamort.encoder.cnn import Encoder, space_to_depth


def make(cfg=EncoderConfig(stem=8, width=16, depth=2)):
  return Encoder(cfg=cfg, cell=4, types=3, channels=3)


def test_any_size_gives_the_cell_grid(key):
  enc = make()
  params = enc.init(key, jnp.zeros((1, 32, 32, 3)))["params"]
  for h, w in ((32, 32), (24, 56), (64, 16)):
    post = enc.apply({"params": params}, jax.random.uniform(key, (2, h, w, 3)))
    assert post.on_logit_BYX.shape == (2, h // 4, w // 4)
    assert post.comp_loc_BYXT.shape == (2, h // 4, w // 4, 3)
    assert post.bg_loc_BYXC.shape == (2, h // 4, w // 4, 3)


def test_space_to_depth_moves_one_cell_per_position():
  x = jnp.arange(2 * 8 * 8 * 1, dtype=jnp.float32).reshape(2, 8, 8, 1)
  y = space_to_depth(x, 4)
  assert y.shape == (2, 2, 2, 16)
  np.testing.assert_array_equal(y[1, 1, 0], x[1, 4:8, 0:4, 0].reshape(-1))


def test_receptive_field_is_as_computed(key):
  """A pixel change reaches a cell's factors exactly within the stated receptive field."""
  cfg = EncoderConfig(stem=4, stem_depth=2, width=8, depth=2)
  rf = cfg.receptive_field(4)
  enc = make(cfg)
  size = 96
  img = jax.random.uniform(key, (1, size, size, 3))
  params = enc.init(key, img)["params"]
  logits = lambda im: enc.apply({"params": params}, im).on_logit_BYX[0]
  base = logits(img)
  cy = cx = 12  # Cell (12, 12) covers pixels 48..51.
  for dist, should_change in ((rf // 2 - 2, True), (rf // 2 + 3, False)):
    bumped = img.at[0, 48 + 1, 48 + 1 + dist].add(0.5)
    changed = bool(jnp.abs(logits(bumped)[cy, cx] - base[cy, cx]) > 1e-4)
    assert changed == should_change, (dist, rf)
