"""train.py through Hydra: composition, the smoke run, sweeps and errors."""

import json
import os
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir

from dropamort.config import TrainConfig, register_configs, to_dataclass
from dropamort.training.loop import train
from dropamort.training.sweep import gather

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONF = os.path.join(ROOT, "conf")
register_configs()


def composed(*overrides):
  with initialize_config_dir(config_dir=CONF, version_base="1.3"):
    return to_dataclass(compose(config_name="train", overrides=list(overrides)))


def test_the_composed_default_is_the_schema_with_nothing_added():
  assert composed() == TrainConfig()


@pytest.mark.parametrize("overrides,want", [
    ([], (3000, 64, 64, 2e-3)),
    (["experiment=gpu"], (50000, 128, 128, 1e-3)),
    (["debug=smoke"], (4, 16, 32, 2e-3)),
    # Later groups win where both set a field; the rest of each stays.
    (["experiment=gpu", "debug=smoke"], (4, 16, 32, 1e-3)),
])
def test_every_group_composes_to_its_values(overrides, want):
  cfg = composed(*overrides)
  got = (cfg.trainer.steps, cfg.encoder.width, cfg.model.height, cfg.optim.lr)
  assert got == pytest.approx(want)


def test_smoke_keeps_the_best_validated_encoder_and_it_scores_what_was_logged(tmp_path):
  """debug=smoke: 4 steps, validated at 2 and 4. The ``best`` checkpoint holds the
  configuration composed here and the encoder of the better validation (F1): restored and
  validated again on the run's validation set, it scores what the log says it did then."""
  from dropamort import checkpoint
  from dropamort.encoder.cnn import make_encoder
  from dropamort.model.model import configured_decoder_params
  from dropamort.training.step import make_posterior_fn
  from dropamort.training.validate import validate, validation_set

  cfg = composed("debug=smoke", "trainer.progress=false")
  result = train(cfg, str(tmp_path))
  assert result["step"] == 4
  lines = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  logged = {l["step"]: l for l in lines if l.get("event") == "validation"}
  assert sorted(logged) == [2, 4] and result["metrics"]["f1"] == logged[4]["f1"]
  saved = checkpoint.load(os.path.join(result["checkpoints"], "best"))
  assert saved.cfg == cfg
  m, t = cfg.model, cfg.trainer
  images, catalog = validation_set(m, configured_decoder_params(m), images=t.val_images,
                                   seed=t.val_seed, data_dir=str(tmp_path / "val_data"))
  again = validate(make_posterior_fn(make_encoder(cfg.encoder, m)), saved.params, images,
                   catalog, cell=m.cell, threshold=t.threshold)
  best = max(v["f1"] for v in logged.values())
  assert again["f1"] == pytest.approx(best, abs=1e-6)
  assert any(again["nll"] == pytest.approx(v["nll"], rel=1e-5)
             for v in logged.values() if v["f1"] == best)


def run(*args, cwd=ROOT):
  return subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), *args], cwd=cwd,
                        capture_output=True, text=True, timeout=300)


def test_bad_value_fails_with_one_line(tmp_path):
  p = run("model.noise_sigma=-1", f"hydra.run.dir={tmp_path}")
  assert p.returncode == 2
  assert p.stderr.strip() == "dropamort: error: model.noise_sigma must be > 0 (got -1.0)"


@pytest.mark.parametrize("override, field", [
    ("trainer.stepz=5", "trainer.stepz"), ("trainer.steps=many", "trainer.steps"),
    ("optim.lr=abc", "optim.lr"), ("model=nope", "model:"),
    # An unknown group option is an error, not silently the defaults.
    ("experiment=nope", "experiment/nope"), ("debug=smok", "debug/smok")])
def test_a_mistyped_key_or_value_fails_with_one_line_naming_it(tmp_path, override, field):
  p = run(override, f"hydra.run.dir={tmp_path}")
  assert p.returncode == 2
  lines = p.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("dropamort: error:") and field in lines[0]
  assert not (tmp_path / "checkpoints").exists()


def test_multirun_puts_each_job_in_its_own_directory(tmp_path):
  p = run("-m", "debug=smoke", "trainer.progress=false", "optim.lr=1e-3,3e-3",
          f"hydra.sweep.dir={tmp_path}")
  assert p.returncode == 0, p.stderr
  for job in ("0", "1"):
    assert (tmp_path / job / "metrics.jsonl").exists()
    assert (tmp_path / job / "validation.png").exists()
  table = gather(str(tmp_path))  # The sweep's table: one row per job, best first.
  assert sorted(map(float, table["optim.lr"])) == [1e-3, 3e-3] and "f1" in table.columns
  assert list(table["f1"]) == sorted(table["f1"], reverse=True)


def test_the_slurm_launcher_config_reaches_submitit():
  """conf/hydra/launcher/slurm.yaml extends the plugin's schema (no cluster needed)."""
  from hydra.utils import get_class

  with initialize_config_dir(config_dir=CONF, version_base="1.3"):
    cfg = compose(config_name="train", return_hydra_config=True,
                  overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu"])
  launcher = cfg.hydra.launcher
  assert get_class(launcher._target_).__name__ == "SlurmLauncher"
  assert (launcher.partition, launcher.gpus_per_node, launcher.timeout_min) == ("gpu", 1, 240)
  assert launcher.signal_delay_s == 120 and launcher.max_num_timeout == 20
