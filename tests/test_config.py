import pytest

from dropamort.config import ConfigError, ModelConfig


@pytest.mark.parametrize("field,value,fragment", [
    ("noise_sigma", 0.0, "model.noise_sigma must be > 0"),
    ("noise_sigma", -1.0, "model.noise_sigma must be > 0"),
    ("cell", 0, "model.cell must be >= 1"),
    ("radius_scale", 0.0, "model.radius_scale must be > 0"),
    ("reach", 0.0, "model.reach must be > 0"),
    ("reach", -2.0, "model.reach must be > 0"),
    ("height", 2, "model.height/model.width must be >= model.cell"),
    ("width", 3, "model.height/model.width must be >= model.cell"),
    ("types", 0, "model.types must be >= 1"),
    ("channels", 0, "model.channels must be >= 1"),
    ("density", 0.1, "model.density must be <= 1/cell²"),
    ("radius_min", 0.0, "model.radius_min must be > 0"),
    ("radius_max", 0.5, "model.radius_max must be > model.radius_min"),
    ("background_high", (0.0,), "model.background_high must be > model.background_low"),
    ("background_low", (0.0, 0.1), "model.background_low must be 1 or model.channels"),
])
def test_bad_values_name_the_field(field, value, fragment):
  with pytest.raises(ConfigError) as err:
    ModelConfig(**{field: value})
  assert fragment in str(err.value)
  assert repr(value) in str(err.value)  # The offending value is shown, not clamped.


def test_defaults_are_valid_and_grid_covers_image():
  cfg = ModelConfig(height=30, width=37, cell=4)
  assert cfg.grid_shape == (8, 10)
  assert cfg.reach_cells * cfg.cell >= cfg.reach * cfg.radius_max


def test_a_saved_config_reads_back_as_it_was_and_a_missing_field_takes_its_default():
  """What a checkpoint stores (``to_dict``, JSON) is what ``from_dict`` gives back, nested
  groups, tuples and nulls included."""
  import dataclasses
  import json

  from dropamort.config import TrainConfig, from_dict, to_dict

  cfg = TrainConfig()
  cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, max_images=None,
                                                          columns=(0.25, 0.75)),
                            model=dataclasses.replace(cfg.model, types=5))
  saved = json.loads(json.dumps(to_dict(cfg)))
  assert from_dict(TrainConfig, saved) == cfg
  del saved["data"]["max_images"]
  assert from_dict(TrainConfig, saved).data.max_images == TrainConfig().data.max_images == 48
