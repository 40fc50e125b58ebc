"""Read droplet images with a trained checkpoint: one forward pass per image.

    python infer.py image=PATH                  # a file, a folder or a glob
    python infer.py image=IMG checkpoint=example infer.pixel_size=0.65   # sizes in µm
    python infer.py image=IMG checkpoint=runs/mine infer.refine_steps=100

Per image, in the Hydra run directory: catalog.csv, catalog.parquet, summary.json,
size_distribution.png, overlay.png, reconstruction.png, residual.png; a folder also gets
catalog_all.csv, summary_all.csv, size_distribution_all.png and report.html; every run
writes run.json (throughput). With infer.sequence=true the images are frames of one
experiment: tracks.csv/.parquet, events.csv, growth.csv, sequence.json, tracks.png and
growth.png too (docs/sequences.md).

    python infer.py image=frames/ infer.sequence=true infer.frame_interval_s=2 infer.pixel_size=1.1
"""

import os
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from omegaconf.errors import MissingMandatoryValue

from dropamort.cli import check_overrides, fail, quiet_libraries, run_or_fail, use_compilation_cache
from dropamort.config import to_dataclass
from dropamort.read_config import InferRunConfig, register_infer_configs
from dropamort.inference.api import load
from dropamort.inference.run import run

register_infer_configs()


@hydra.main(config_path="conf", config_name="infer", version_base="1.3")
def main(raw: DictConfig) -> None:
  quiet_libraries()
  use_compilation_cache()
  try:
    cfg = run_or_fail(to_dataclass, raw, InferRunConfig)
  except MissingMandatoryValue:
    fail("image=PATH is required (a file, a folder or a glob)")
  opts = cfg.infer
  reader = run_or_fail(load, cfg.checkpoint, tile=opts.tile, overlap=opts.overlap)
  out_dir = HydraConfig.get().runtime.output_dir
  if opts.sequence:
    from dropamort.sequence.run import run_sequence

    failed = run_or_fail(run_sequence, reader, cfg.image, out_dir, opts)
  else:
    failed = run_or_fail(run, reader, cfg.image, out_dir, opts)
  if failed:
    sys.exit(1)


if __name__ == "__main__":
  check_overrides(os.path.join(os.path.dirname(os.path.abspath(__file__)), "conf"), "infer",
                  sys.argv)
  main()
