"""Evaluate a checkpoint on a fixed dataset: detection, calibration and SBC.

    python evaluate.py                                   # droplet_sim/380x507_seed
    python evaluate.py dataset=droplet_sim/64x64_crowded checkpoint=runs/train
    python evaluate.py dataset=droplet_images images=DIR annotations=labels.csv scale=0.25

Writes report.json, reliability.png and (simulated sets) sbc.png to the Hydra run
directory; datasets are built under data_dir (default ./datasets) the first time.
docs/evaluation.md says what each number means.
"""

import os
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from dropamort.cli import check_overrides, quiet_libraries, run_or_fail, use_compilation_cache
from dropamort.config import to_dataclass
from dropamort.read_config import EvaluateRunConfig, register_evaluate_configs
from dropamort.evaluation.run import evaluate, summary_lines

register_evaluate_configs()


@hydra.main(config_path="conf", config_name="evaluate", version_base="1.3")
def main(raw: DictConfig) -> None:
  quiet_libraries()
  use_compilation_cache()
  cfg = run_or_fail(to_dataclass, raw, EvaluateRunConfig)
  out_dir = HydraConfig.get().runtime.output_dir
  report = run_or_fail(evaluate, cfg, out_dir)
  print(summary_lines(report))
  print(f"report: {out_dir}/report.json")


if __name__ == "__main__":
  check_overrides(os.path.join(os.path.dirname(os.path.abspath(__file__)), "conf"), "evaluate",
                  sys.argv)
  main()
