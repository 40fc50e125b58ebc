"""Train the amortized encoder on images simulated from the generative model.

    python train.py                      # the CPU-sized default (7-18 min on 2 cores)
    python train.py debug=smoke          # a few steps, seconds
    python train.py experiment=gpu       # the full-size configuration, for a GPU
    python train.py -m optim.lr=1e-3,3e-3 encoder.width=32,64    # a sweep
    python train.py images=DIR out=runs/mine   # calibrate on your images (--help: the fields)

Outputs (checkpoints, metrics.jsonl, validation.png) go to the Hydra run directory,
``runs/train`` unless ``out=...``; starting again in the same directory resumes.
"""

import os
import sys

import hydra
import jax
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from dropamort.cli import check_overrides, quiet_libraries, run_or_fail, use_compilation_cache
from dropamort.config import register_configs, to_dataclass
from dropamort.training.loop import final_report, train
from dropamort.training.trainer import Preempted

register_configs()


@hydra.main(config_path="conf", config_name="train", version_base="1.3")
def main(raw: DictConfig) -> float:
  quiet_libraries()
  use_compilation_cache()
  cfg = run_or_fail(to_dataclass, raw)
  if cfg.trainer.distributed:  # Multi-host (e.g. SLURM): JAX finds the cluster itself.
    jax.distributed.initialize()
  run_dir = HydraConfig.get().runtime.output_dir
  try:  # With data.real, wake-sleep rounds calibrate the model on real images too.
    result = run_or_fail(train, cfg, run_dir)
  except Preempted as err:  # A scheduler's SIGTERM: checkpoint saved; 128 + 15 as usual.
    print(f"dropamort: {err}", file=sys.stderr)
    sys.exit(143)
  print(final_report(result))
  return float(result["metrics"][cfg.trainer.best_metric])  # What a Hydra sweeper optimizes.


if __name__ == "__main__":
  check_overrides(os.path.join(os.path.dirname(os.path.abspath(__file__)), "conf"), "train",
                  sys.argv)
  main()
