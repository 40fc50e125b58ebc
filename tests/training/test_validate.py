"""Training's validation set is a droplet_sim set of the run's own model, read from disk."""

import glob

import jax
import numpy as np

from dropamort.datasets import store
from dropamort.model.decoder import init_params
from dropamort.training.state import init_state, make_optimizer
from dropamort.training.validate import validation_set


def test_validation_set_is_a_stored_droplet_sim_set(tiny_cfg, tmp_path):
  state = init_state(jax.random.key(0), tiny_cfg, make_optimizer(tiny_cfg.optim, 6))
  images, catalog = validation_set(tiny_cfg, state.decoder_params, str(tmp_path))
  assert images.shape == (8, 16, 16, 3)
  [path] = glob.glob(str(tmp_path / "droplet_sim" / "custom_*" / "1.0.0"))
  builder = store.open_directory(path)
  assert builder.info.metadata["model"]["height"] == 16
  assert builder.info.metadata["seed"] == tiny_cfg.trainer.val_seed
  again, again_catalog = store.read_sim(builder)
  np.testing.assert_array_equal(images, again)
  np.testing.assert_array_equal(catalog.on_BYX, again_catalog.on_BYX)


def test_another_decoder_gets_its_own_set(tiny_cfg, tmp_path):
  state = init_state(jax.random.key(0), tiny_cfg, make_optimizer(tiny_cfg.optim, 6))
  first, _ = validation_set(tiny_cfg, state.decoder_params, str(tmp_path))
  other = init_params(jax.random.key(5), 3, 3, tiny_cfg.model.decoder_hidden)
  second, _ = validation_set(tiny_cfg, other, str(tmp_path))
  assert len(glob.glob(str(tmp_path / "droplet_sim" / "custom_*"))) == 2
  assert not np.array_equal(first, second)
