"""``droplet_sim``: fixed simulated image sets with their true catalogs (TFDS, no TensorFlow).

Stored as array_record, read with ``tfds.data_source`` and batched with grain, so that
training's validation, ``evaluate.py`` and the benchmarks all measure on the same images.
One example = one image (H, W, C, float32) and its true catalog on the cell grid.

Builder configs are named ``{size}_{density}``: sizes 64x64 and 380x507 (the example's
size at scale 0.25), densities sparse / seed (like the example image) / crowded, seed 0.
Other sets (another seed, the model of a training run, a calibrated decoder) are made
with ``custom_config`` and named by a hash of everything that determines their bytes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

import jax
import numpy as np
import tensorflow_datasets as tfds

from dropamort.config import ModelConfig, from_dict, to_dict
from dropamort.model.model import configured_decoder_params
from dropamort.model.simulate import make_simulate

SIZES = {"64x64": (64, 64), "380x507": (380, 507)}
# Droplet-centre intensity per px² before hard-core thinning. "seed" is the default
# prior, which reproduces the example image's spacing; the others bracket it. These sets
# hold droplets of the band (1–8 px) on a constant background, like the example image.
# "wide" spans 1–128 px: the band with radii near log-uniform, four layers of larger
# droplets (8–16, 16–32, 32–64 and 64–128 px, log-uniform) covering 17.5% of the area
# each before thinning, on an illumination gradient (a background field of spread 0.3 on
# knots every 64 px).
DENSITIES = {"sparse": 0.005, "seed": 0.02, "crowded": 0.045, "wide": 0.006}
IMAGES = {"64x64": 256, "380x507": 64}
CHUNK = 16  # Images per simulation call.


@dataclasses.dataclass(eq=False)
class DropletSimConfig(tfds.core.BuilderConfig):
  """One fixed set: the model (ModelConfig fields as JSON), image count and seed."""

  model_json: str = "{}"
  images: int = 32
  seed: int = 0
  decoder_sha: str = "default"  # "default": the model's configured decoder file; else
  # the hash of the decoder parameters the set was made with (checked when building).

  @property
  def model(self) -> ModelConfig:
    return from_dict(ModelConfig, json.loads(self.model_json))


def _model_for(size: str, density: str) -> ModelConfig:
  h, w = SIZES[size]
  if density == "wide":
    return ModelConfig(height=h, width=w, density=DENSITIES[density], radius_loc=1.04,
                       radius_scale=1.5, larger_layers=4, larger_fraction=0.175,
                       background_knot=64, background_sd=0.3)
  return ModelConfig(height=h, width=w, density=DENSITIES[density], larger_layers=0,
                     background_knot=0)


def named_config(size: str, density: str, seed: int = 0) -> DropletSimConfig:
  """A standard set, e.g. ``named_config("380x507", "seed")``."""
  name = f"{size}_{density}" + (f"_s{seed}" if seed else "")
  return DropletSimConfig(name=name, model_json=json.dumps(to_dict(_model_for(size, density))),
                          images=IMAGES[size], seed=seed,
                          description=f"{size}, {density} density, seed {seed}")


def params_sha(decoder_params) -> str:
  leaves = jax.tree_util.tree_leaves_with_path(decoder_params)
  h = hashlib.sha256()
  for path, leaf in leaves:
    h.update(jax.tree_util.keystr(path).encode())
    h.update(np.ascontiguousarray(np.asarray(leaf, np.float32)).tobytes())
  return h.hexdigest()[:16]


def custom_config(model: ModelConfig, images: int, seed: int,
                  decoder_params=None) -> DropletSimConfig:
  """A set from any model (and optionally in-memory decoder parameters)."""
  model_json = json.dumps(to_dict(model), sort_keys=True)
  if decoder_params is None:
    decoder_params = configured_decoder_params(model)
  sha = params_sha(decoder_params)
  digest = hashlib.sha256(f"{model_json}|{images}|{seed}|{sha}".encode()).hexdigest()[:12]
  return DropletSimConfig(name=f"custom_{digest}", model_json=model_json, images=images,
                          seed=seed, decoder_sha=sha,
                          description=f"{model.height}x{model.width}, {images} images, "
                                      f"seed {seed}")


class DropletSim(tfds.core.GeneratorBasedBuilder):
  """Simulated droplet images with their true catalogs."""

  VERSION = tfds.core.Version("2.1.0")
  RELEASE_NOTES = {"1.0.0": "First version: float32 images, grid catalogs.",
                   "2.0.0": "Background per cell (a smooth field); droplets of the larger "
                            "layers as flat lists (larger_x, larger_y, larger_r).",
                   "2.1.0": "wide: four larger layers, each twice the radius of the one "
                            "below (the pyramid's step), instead of two at four times."}
  BUILDER_CONFIGS = [named_config(s, d) for s in SIZES for d in DENSITIES]

  def __init__(self, *, decoder_params=None, **kwargs):
    self._decoder_params = decoder_params
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    m = self.builder_config.model
    gy, gx = m.grid_shape
    f32 = lambda *shape: tfds.features.Tensor(shape=shape, dtype=np.float32)
    return tfds.core.DatasetInfo(
        builder=self, description=self.builder_config.description, disable_shuffling=True,
        # The model, count and seed travel with the files, so a set opened from its
        # directory alone still says what it was simulated from.
        metadata=tfds.core.MetadataDict(model=json.loads(self.builder_config.model_json),
                                        images=self.builder_config.images,
                                        seed=self.builder_config.seed,
                                        decoder_sha=self.builder_config.decoder_sha),
        features=tfds.features.FeaturesDict({
            "index": tfds.features.Scalar(dtype=np.int64),
            "image": f32(m.height, m.width, m.channels),
            "on": tfds.features.Tensor(shape=(gy, gx), dtype=np.bool_),
            "offset": f32(gy, gx, 2),
            "radius": f32(gy, gx),
            "composition": f32(gy, gx, m.types),
            "background": f32(gy, gx, m.channels),
            # Droplets of the larger layers centred in the image (radius > radius_max).
            "larger_x": tfds.features.Tensor(shape=(None,), dtype=np.float32),
            "larger_y": tfds.features.Tensor(shape=(None,), dtype=np.float32),
            "larger_r": tfds.features.Tensor(shape=(None,), dtype=np.float32),
        }))

  def _split_generators(self, dl_manager):
    return {"test": self._generate_examples()}

  def _decoder(self):
    cfg = self.builder_config
    params = self._decoder_params
    if params is None:
      params = configured_decoder_params(cfg.model)
    if cfg.decoder_sha != "default" and params_sha(params) != cfg.decoder_sha:
      raise ValueError(f"droplet_sim/{cfg.name}: the decoder parameters differ from the "
                       f"ones the set is named for")
    return params

  def _generate_examples(self):
    cfg = self.builder_config
    model, decoder = cfg.model, self._decoder()
    # Simulate on whole cells, then cut the image to size: droplets whose centres fall
    # outside the image are removed from the catalog.
    cell = model.cell
    sim_model = dataclasses.replace(model, height=-(-model.height // cell) * cell,
                                    width=-(-model.width // cell) * cell)
    sim = make_simulate(sim_model, CHUNK, with_larger=True)
    key = jax.random.key(cfg.seed)
    for chunk in range(-(-cfg.images // CHUNK)):
      images, catalog, larger = jax.tree.map(
          np.asarray, sim(jax.random.fold_in(key, chunk), decoder))
      centres = np.asarray(catalog.centres_BYX2(cell))
      inside = (centres[..., 0] < model.width) & (centres[..., 1] < model.height)
      on = catalog.on_BYX & inside
      for b in range(CHUNK):
        i = chunk * CHUNK + b
        if i >= cfg.images:
          return
        big = _larger_inside(larger, b, model.height, model.width)
        yield i, {"index": i, "image": images[b, :model.height, :model.width],
                  "on": on[b], "offset": catalog.offset_BYX2[b],
                  "radius": catalog.radius_BYX[b],
                  "composition": catalog.composition_BYXT[b],
                  "background": catalog.background_BYXC[b],
                  "larger_x": big[0], "larger_y": big[1], "larger_r": big[2]}


def _larger_inside(larger, b: int, height: int, width: int):
  """x, y, r of image b's larger-layer droplets centred inside height × width."""
  xs, ys, rs = [np.zeros(0, np.float32)] * 3
  for centres, radius, on in larger:
    keep = on[b] & (centres[b, :, 0] < width) & (centres[b, :, 1] < height)
    xs = np.concatenate([xs, centres[b, keep, 0]])
    ys = np.concatenate([ys, centres[b, keep, 1]])
    rs = np.concatenate([rs, radius[b, keep]])
  return xs.astype(np.float32), ys.astype(np.float32), rs.astype(np.float32)
