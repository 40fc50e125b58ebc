import jax
import numpy as np

from dropamort.config import EncoderConfig, ModelConfig, TrainConfig
from dropamort.inference.predictor import Predictor, TilePlan
from dropamort.pyramid import owned_ranges, tile_starts
from dropamort.model.decoder import load_params
from dropamort.encoder.cnn import make_encoder


def test_owned_ranges_partition_the_grid():
  for n, tile, overlap in ((100, 16, 4), (17, 16, 4), (16, 16, 4), (5, 16, 2), (64, 20, 3)):
    starts = tile_starts(n, tile, overlap)
    ranges = owned_ranges(n, starts, tile)
    cells = np.concatenate([np.arange(a, b) for a, b in ranges])
    np.testing.assert_array_equal(cells, np.arange(n))  # Each cell exactly once.
    for (a, b), s in zip(ranges, starts):
      if b > a:  # Owned cells lie in the tile, with `overlap` context unless at the border.
        assert s <= a and b <= s + min(tile, n)
        assert a - s >= overlap or s == 0
        assert s + tile - b >= overlap or s + tile >= n


def test_tiled_equals_untiled_away_from_seams(key):
  cfg = TrainConfig(model=ModelConfig(radius_max=4.0),
                    encoder=EncoderConfig(stem=4, width=8, depth=2))
  params = make_encoder(cfg.encoder, cfg.model).init(key, np.zeros((1, 32, 32, 3)))["params"]
  dec = load_params("default", 3, 3, (64, 32, 16))
  image = np.asarray(jax.random.uniform(key, (100, 148, 3)))
  whole = Predictor(cfg, params, dec, TilePlan(tile=512)).posterior(image)
  tiled = Predictor(cfg, params, dec, TilePlan(tile=48, overlap=4, batch=3)).posterior(image)
  rf_cells = cfg.encoder.receptive_field(4) // 2 // 4 + 1
  assert rf_cells <= 4  # The overlap covers the receptive field: exact equality expected.
  gy, gx = whole.on_logit_BYX.shape[1:]
  for name in ("on_logit_BYX", "offset_loc_BYX2", "logr_scale_BYX", "comp_loc_BYXT"):
    a, b = np.asarray(getattr(whole, name)), np.asarray(getattr(tiled, name))[:, :gy, :gx]
    np.testing.assert_allclose(a, b, atol=2e-5, err_msg=name)
