"""droplet_sim: deterministic rebuilds, equality with the simulator, reading, errors."""

import glob
import json
import os

import jax
import numpy as np
import pytest

from dropamort.config import ModelConfig
from dropamort.datasets import DatasetError, store
from dropamort.datasets.droplet_sim import CHUNK, DropletSim, custom_config
from dropamort.model.decoder import load_params
from dropamort.model.simulate import make_simulate

SMALL = ModelConfig(height=16, width=16, radius_max=4.0)


def _files(builder):
  out = {}
  for path in sorted(glob.glob(os.path.join(builder.data_dir, "*.array_record*"))):
    with open(path, "rb") as f:
      out[os.path.basename(path)] = f.read()
  return out


def test_rebuilding_gives_identical_bytes(tmp_path):
  cfg = custom_config(SMALL, images=20, seed=3)
  a = store.build(DropletSim, cfg, str(tmp_path / "a"))
  b = store.build(DropletSim, custom_config(SMALL, images=20, seed=3), str(tmp_path / "b"))
  fa, fb = _files(a), _files(b)
  assert fa and fa == fb
  c = store.build(DropletSim, custom_config(SMALL, images=20, seed=4), str(tmp_path / "c"))
  assert _files(c) != fa  # Another seed is another set.


def test_stored_images_are_the_simulator_output(tmp_path):
  builder = store.build(DropletSim, custom_config(SMALL, images=CHUNK + 3, seed=7),
                        str(tmp_path))
  images, catalog = store.read_sim(builder)
  assert images.shape == (CHUNK + 3, 16, 16, 3) and images.dtype == np.float32
  sim = make_simulate(SMALL, CHUNK)
  params = load_params("default", 3, 3, SMALL.decoder_hidden)
  want_images, want_cat = sim(jax.random.fold_in(jax.random.key(7), 1), params)
  np.testing.assert_array_equal(images[CHUNK:], np.asarray(want_images)[:3])
  np.testing.assert_array_equal(np.asarray(catalog.on_BYX[CHUNK:]),
                                np.asarray(want_cat.on_BYX)[:3])
  np.testing.assert_array_equal(np.asarray(catalog.radius_BYX[CHUNK:]),
                                np.asarray(want_cat.radius_BYX)[:3])
  # The limit reads a prefix.
  first, _ = store.read_sim(builder, limit=2)
  np.testing.assert_array_equal(first, images[:2])


def test_a_width_off_the_cell_grid_keeps_only_droplets_inside(tmp_path):
  model = ModelConfig(height=16, width=15, radius_max=4.0, density=0.06)
  builder = store.build(DropletSim, custom_config(model, images=8, seed=0), str(tmp_path))
  images, catalog = store.read_sim(builder)
  assert images.shape[1:3] == (16, 15)
  x = np.asarray(catalog.centres_BYX2(4))[..., 0]
  on = np.asarray(catalog.on_BYX)
  assert on.sum() > 0 and np.all(x[on] < 15)
  assert builder.info.metadata["model"]["width"] == 15


def test_named_configs_and_unknown_names(tmp_path):
  cfg = store.parse_sim_name("64x64_sparse_s5")
  assert (cfg.seed, cfg.model.height, cfg.model.density) == (5, 64, 0.005)
  with pytest.raises(DatasetError, match="unknown config"):
    store.parse_sim_name("64x64_medium")
  names = {c.name for c in DropletSim.BUILDER_CONFIGS}
  assert {"64x64_seed", "380x507_seed", "380x507_sparse", "380x507_crowded"} <= names


def test_open_directory_errors(tmp_path):
  with pytest.raises(DatasetError, match="no such dataset directory"):
    store.open_directory(str(tmp_path / "missing"))
  with pytest.raises(DatasetError, match="not a built dataset"):
    store.open_directory(str(tmp_path))
  builder = store.build(DropletSim, custom_config(SMALL, images=2, seed=0), str(tmp_path))
  assert store.open_directory(str(builder.data_dir)).info.name == "droplet_sim"
  info = os.path.join(builder.data_dir, "dataset_info.json")
  with open(info) as f:
    data = json.load(f)
  data["version"] = "0.9.0"
  with open(info, "w") as f:
    json.dump(data, f)
  with pytest.raises(DatasetError, match="built by droplet_sim 0.9.0"):
    store.open_directory(str(builder.data_dir))
