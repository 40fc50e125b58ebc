"""Training's validation set is a droplet_sim set of the run's own model, read from disk."""

import glob

import jax
import numpy as np

from dropamort.datasets import store
from dropamort.model.decoder import init_params, load_params
from dropamort.datasets.droplet_sim import DropletSim
from dropamort.training.validate import validation_set


def _set(cfg, decoder, folder):
  return validation_set(cfg.model, decoder, images=cfg.trainer.val_images,
                        seed=cfg.trainer.val_seed, data_dir=str(folder))


def test_validation_set_is_a_stored_droplet_sim_set(tiny_cfg, tmp_path):
  images, catalog = _set(tiny_cfg, load_params("default", 3, 3, (64, 32, 16)), tmp_path)
  assert images.shape == (8, 16, 16, 3)
  [path] = glob.glob(str(tmp_path / "droplet_sim" / "custom_*" / str(DropletSim.VERSION)))
  builder = store.open_directory(path)
  assert builder.info.metadata["model"]["height"] == 16
  assert builder.info.metadata["seed"] == tiny_cfg.trainer.val_seed
  again, again_catalog = store.read_sim(builder)
  np.testing.assert_array_equal(images, again)
  np.testing.assert_array_equal(catalog.on_BYX, again_catalog.on_BYX)


def test_another_decoder_gets_its_own_set(tiny_cfg, tmp_path):
  first, _ = _set(tiny_cfg, load_params("default", 3, 3, (64, 32, 16)), tmp_path)
  other = init_params(jax.random.key(5), 3, 3, tiny_cfg.model.decoder_hidden)
  second, _ = _set(tiny_cfg, other, tmp_path)
  assert len(glob.glob(str(tmp_path / "droplet_sim" / "custom_*"))) == 2
  assert not np.array_equal(first, second)
