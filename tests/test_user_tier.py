"""The user tier (``dropamort.user_tier``): each field sets the tuning fields it stands for,
through Hydra as ``train.py`` composes it; conflicts and bad values fail in one line."""

import dataclasses
import json
import os
import re
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from dropamort.config import (ConfigError, TrainConfig, from_dict, register_configs, to_dataclass,
                              to_dict)
from dropamort.training.budget import TimeBudget

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONF = os.path.join(ROOT, "conf")
register_configs()
USER = [f.name for f in dataclasses.fields(TrainConfig)
        if not dataclasses.is_dataclass(f.default_factory)]


def composed(*overrides, hydra=False):
  with initialize_config_dir(config_dir=CONF, version_base="1.3"):
    raw = compose(config_name="train", overrides=list(overrides), return_hydra_config=hydra)
    return raw if hydra else to_dataclass(raw)


@pytest.mark.parametrize("override,want", [
    ("images=/data/drops", {"data.real": "/data/drops"}),
    ("contrast=either", {"model.appearance": "edge", "model.contrast": "either",
                         "calibrate.outline": False, "calibrate.polish_steps": 0}),
    ("contrast=bright", {"model.appearance": "edge", "model.contrast": "bright",
                         "calibrate.outline": False, "calibrate.polish_steps": 0}),
    ("overlap=true", {"model.hard_core": False}),
    ("overlap=false", {"model.hard_core": True}),
    # The smallest radius (8 px) read at 2 px: a quarter of the size; never enlarged.
    ("radius_range=[8,40]", {"data.scale": 0.25}),
    ("radius_range=[1,40]", {"data.scale": 1.0}),
    ("steps=7", {"trainer.steps": 7}),
    ("rounds=5", {"calibrate.rounds": 5}),
    ("seed=3", {"trainer.seed": 3}),
])
def test_each_user_field_sets_the_tuning_fields_it_stands_for(override, want):
  cfg, default = composed(override), TrainConfig()
  for path, value in want.items():
    group, name = path.split(".")
    assert getattr(getattr(cfg, group), name) == value
  # Nothing else moved: the groups equal the defaults with just these fields replaced.
  for group in ("model", "encoder", "optim", "trainer", "data", "calibrate"):
    fields = {p.split(".")[1]: v for p, v in want.items() if p.startswith(group + ".")}
    assert getattr(cfg, group) == dataclasses.replace(getattr(default, group), **fields)


def test_out_is_the_run_directory_and_pixel_size_and_budget_are_kept_as_given():
  raw = composed("out=runs/mine", "pixel_size=0.65", "time_budget=20", hydra=True)
  assert OmegaConf.select(raw, "hydra.run.dir") == "runs/mine"
  cfg = composed("pixel_size=0.65", "time_budget=20")
  assert (cfg.pixel_size, cfg.time_budget) == (0.65, 20.0)
  assert dataclasses.replace(cfg, pixel_size=None, time_budget=None) == TrainConfig()


@pytest.mark.parametrize("overrides,fragment", [
    (["contrast=bright", "model.contrast=either"],
     "model.contrast must be left at its default ('dark') when contrast='bright' sets it"),
    (["contrast=dark", "calibrate.polish_steps=100"], "calibrate.polish_steps must be left"),
    (["overlap=true", "model.hard_core=false", "rounds=2", "calibrate.rounds=4"],
     "calibrate.rounds must be left at its default (3) when rounds=2"),
    (["radius_range=[8,40]", "data.scale=0.5"], "data.scale must be left"),
    (["images=a", "data.real=b"], "data.real must be left"),
    (["steps=10", "trainer.steps=20"], "trainer.steps must be left"),
    (["contrast=grey"], "contrast must be dark or bright or either"),
    (["radius_range=[5,2]"], "radius_range must be [smallest, largest]"),
    (["radius_range=[0,2]"], "radius_range must be [smallest, largest]"),
    (["time_budget=0"], "time_budget must be > 0 minutes"),
    (["pixel_size=-1"], "pixel_size must be > 0"),
    (["rounds=0"], "rounds must be >= 1"),
])
def test_a_conflict_or_a_bad_value_names_the_field(overrides, fragment):
  with pytest.raises(ConfigError, match=re.escape(fragment)):
    composed(*overrides)


def test_a_tuning_field_already_holding_the_user_fields_value_is_no_conflict():
  cfg = composed("contrast=either", "model.contrast=either", "overlap=true",
                 "model.hard_core=false")
  assert cfg.model.contrast == "either" and not cfg.model.hard_core


def test_a_preset_speaks_the_user_tier_so_the_command_line_wins():
  assert composed("debug=smoke", "steps=10").trainer.steps == 10
  assert composed("experiment=gpu", "steps=100").trainer.steps == 100


def test_the_config_a_checkpoint_stores_reads_back_with_both_tiers_as_they_were():
  cfg = composed("images=/data", "contrast=either", "overlap=true", "radius_range=[8,40]",
                 "pixel_size=0.65", "time_budget=20", "steps=7", "rounds=2", "seed=3")
  again = from_dict(TrainConfig, json.loads(json.dumps(to_dict(cfg))))
  assert again == cfg and again.radius_range == (8.0, 40.0)


def test_the_tier_leaves_shared_groups_of_another_config_alone():
  base = TrainConfig()
  user = dataclasses.replace(base, contrast="bright")
  assert user.model.contrast == "bright" and base.model.contrast == "dark"


def test_help_lists_exactly_the_user_fields_and_there_are_at_most_twelve():
  p = subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), "--help"], cwd=ROOT,
                     capture_output=True, text=True, timeout=120)
  assert p.returncode == 0, p.stderr
  listed = re.findall(r"^  (\w+)=", p.stdout, flags=re.M)
  assert listed == USER and len(USER) <= 12


class Clock:
  def __init__(self):
    self.t = 100.0

  def __call__(self):
    return self.t


def test_the_budget_admits_a_round_only_while_one_as_long_as_the_last_fits():
  clock = Clock()
  budget = TimeBudget(10.0, clock)  # 600 s.
  clock.t += 240  # Round 0 ends at 240 s: another 240 s fits (480 <= 600).
  assert budget.round_ended() == (True, 240.0, 240.0)
  clock.t += 200  # Round 1 ends at 440 s: 440 + 200 = 640 > 600.
  assert budget.round_ended() == (False, 200.0, 440.0)
  unlimited = TimeBudget(None, clock)
  clock.t += 1e9
  assert unlimited.round_ended()[0]


def test_a_model_trained_with_a_pixel_size_reports_micrometres_unless_told_otherwise(
    checkpoint):
  import numpy as np

  import dropamort
  from dropamort.read_config import InferConfig

  reader = dropamort.load(checkpoint)
  image = np.random.default_rng(0).random((40, 52, 3)).astype(np.float32)
  opts = InferConfig(samples=20, progress=False, threshold=0.05)
  assert "r_um" not in reader.infer(image, opts).table  # Trained without one: pixels.
  reader.cfg = dataclasses.replace(reader.cfg, pixel_size=0.5)  # As the checkpoint says.
  table = reader.infer(image, opts).table
  assert len(table) and np.allclose(table["r_um"], table["r"] * 0.5)
  told = reader.infer(image, dataclasses.replace(opts, pixel_size=2.0))
  assert np.allclose(told.table["r_um"], told.table["r"] * 2.0)
  assert told.summary["pixel_size_um"] == 2.0
