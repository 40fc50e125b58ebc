"""evaluate(): a tiny checkpoint on a built set -> a consistent report, plots, errors."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from dropamort.config import ModelConfig
from dropamort.read_config import EvaluateConfig, EvaluateRunConfig
from dropamort.datasets import DatasetError, store
from dropamort.datasets.droplet_sim import DropletSim, custom_config
from dropamort.evaluation.run import evaluate, summary_lines
from dropamort.model.decoder import init_params

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = ModelConfig(height=16, width=16, radius_max=4.0)  # The checkpoint fixture's model.


@pytest.fixture(scope="module")
def sim_set(tmp_path_factory):
  builder = store.build(DropletSim, custom_config(TINY, images=12, seed=1),
                        str(tmp_path_factory.mktemp("data")))
  return str(builder.data_dir)


def test_report_is_consistent(checkpoint, sim_set, tmp_path):
  cfg = EvaluateRunConfig(checkpoint=checkpoint, dataset=sim_set,
                          evaluate=EvaluateConfig(sbc_draws=19, radius_edges=(1.0, 2.0)))
  report = evaluate(cfg, str(tmp_path), progress=False)
  assert sorted(os.listdir(tmp_path)) == ["reliability.png", "report.json", "sbc.png"]
  with open(tmp_path / "report.json") as f:
    assert json.load(f)["images"] == 12
  det = report["detection"]
  assert det["tp"] + det["fn"] == report["true_droplets"]
  assert det["tp"] + det["fp"] == report["detected_droplets"]
  bins = report["by_radius"]
  assert [b["r_max"] for b in bins] == [2.0, None]
  for k in ("tp", "fn"):  # Every true droplet has r >= 1 (the prior's minimum).
    assert sum(b[k] for b in bins) == det[k]
  assert report["prior_mismatch"] == []
  # Every candidate the pyramid kept (p >= 0.01) has an outcome: matched or not.
  assert report["reliability"]["n"] >= report["detected_droplets"]
  for stat in ("count", "mean_radius", "total_area"):
    ranks = np.asarray(report["sbc"][stat]["ranks"])
    assert ranks.min() >= 0 and ranks.max() <= 19 and len(ranks) <= 12
  assert report["sbc"]["count"]["n"] == 12
  assert "f1_r_ge_1.5 >= 0.95" in report["goals"]
  assert "inference" in summary_lines(report)
  assert [b["r_min"] for b in report["by_octave"]][:2] == [1.0, 2.0]


def test_channels_or_types_that_do_not_fit_are_refused(checkpoint, tmp_path):
  other = ModelConfig(height=16, width=16, radius_max=4.0, types=2)
  params = init_params(jax.random.key(0), 3, 2, other.decoder_hidden)  # Decoder for T = 2.
  builder = store.build(DropletSim, custom_config(other, images=2, seed=0, decoder_params=params),
                        str(tmp_path), decoder_params=params)
  cfg = EvaluateRunConfig(checkpoint=checkpoint, dataset=str(builder.data_dir))
  with pytest.raises(DatasetError, match="types=2.*types=3"):
    evaluate(cfg, str(tmp_path / "out"), progress=False)
  assert not os.path.exists(tmp_path / "out" / "report.json")


def test_real_images_need_annotations(checkpoint, image_folder_ok, tmp_path):
  cfg = EvaluateRunConfig(checkpoint=checkpoint, dataset="droplet_images",
                          images=str(image_folder_ok), data_dir=str(tmp_path / "d"))
  with pytest.raises(DatasetError, match="no annotated images"):
    evaluate(cfg, str(tmp_path / "out"), progress=False)
  csv = tmp_path / "labels.csv"
  csv.write_text("image,x,y,r\na.png,5,5,2\na.png,12,9,1.5\n")
  cfg = EvaluateRunConfig(checkpoint=checkpoint, dataset="droplet_images",
                          images=str(image_folder_ok), annotations=str(csv),
                          data_dir=str(tmp_path / "d"))
  report = evaluate(cfg, str(tmp_path / "out"), progress=False)
  assert report["images"] == 1 and report["true_droplets"] == 2
  assert "sbc" not in report and os.path.exists(tmp_path / "out" / "reliability.png")


@pytest.fixture
def image_folder_ok(tmp_path):
  from PIL import Image
  d = tmp_path / "imgs"
  d.mkdir()
  rng = np.random.default_rng(0)
  for name in ("a.png", "b.png"):
    Image.fromarray((rng.random((16, 16, 3)) * 255).astype(np.uint8)).save(d / name)
  return d


@pytest.mark.parametrize("args, message", [
    (["dataset=/no/such/set"], "/no/such/set: no such dataset directory"),
    (["dataset=droplet_sim/64x64_medium"], "unknown config"),
    (["dataset=droplet_images"], "needs images=FOLDER"),
    (["evaluate.threshold=2"], "evaluate.threshold must be in (0, 1)"),
])
def test_cli_errors_are_one_line(checkpoint, tmp_path, args, message):
  proc = subprocess.run(
      [sys.executable, os.path.join(ROOT, "evaluate.py"), f"checkpoint={checkpoint}",
       f"hydra.run.dir={tmp_path}/run", f"data_dir={tmp_path}/data", *args],
      capture_output=True, text=True, cwd=tmp_path, timeout=300)
  assert proc.returncode == 2, proc.stderr
  lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
  assert lines[-1].startswith("dropamort: error:") and message in lines[-1], proc.stderr
  assert not os.path.exists(tmp_path / "run" / "report.json")
