"""Trains round 0 of a calibration with the default configuration and saves it as the
packaged start (``dropamort/training/start.py``, ``dropamort/assets/start_model``).

    python scripts/build_start_model.py            # about 25 min on 2 CPU cores
    python scripts/build_start_model.py --from runs/condensation/round0

Rebuild it whenever a default that round 0 depends on changes (the model, the decoder's
packaged parameters, the encoder, the optimizer, trainer.steps / batch_size / seed,
calibrate.rounds / sleep_steps); a stale start is refused at calibration time when the
configuration or the default decoder differ, not when only the simulator's code changed.
``--from`` takes a run's checkpoint directory saved at the end of round 0's sleep stage
instead of training one (a calibration of the same code and configuration has one).
"""

import argparse
import os
import shutil
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from PIL import Image  # noqa: E402

from dropamort.config import register_configs, to_dataclass  # noqa: E402
from dropamort.training import start  # noqa: E402
from dropamort.training.trainer import Trainer, sleep_target  # noqa: E402


def default_config(images: str):
  """The README's calibration configuration with ``data.real=images``."""
  register_configs()
  with initialize_config_dir(config_dir=os.path.join(ROOT, "conf"), version_base="1.3"):
    return to_dataclass(compose(config_name="train", overrides=[f"data.real={images}"]))


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--out", default=start.START_DIR)
  ap.add_argument("--from", dest="source", default=None,
                  help="a checkpoint directory (Orbax manager) at the end of round 0's sleep")
  args = ap.parse_args()
  work = tempfile.mkdtemp(prefix="dropamort-start-")
  # Round 0 never looks at the images; calibration needs a folder to be configured.
  folder = os.path.join(work, "images")
  os.makedirs(folder)
  for i in range(5):
    Image.fromarray(np.full((128, 128, 3), 128, np.uint8)).save(os.path.join(folder, f"{i}.png"))
  cfg = default_config(folder)
  trainer = Trainer(cfg, os.path.join(work, "run"))
  trainer.start_dir = os.path.join(work, "none")  # Train round 0 here, whatever ships.
  if args.source:
    trainer.ckpt.close()
    run = os.path.join(work, "run")
    shutil.rmtree(os.path.join(run, "checkpoints"))
    os.makedirs(os.path.join(run, "checkpoints"))
    shutil.copytree(os.path.abspath(args.source), os.path.join(run, "checkpoints", "latest"))
    trainer = Trainer(cfg, run)
    trainer.start_dir = os.path.join(work, "none")
  state, _ = trainer.initial_state()
  target = sleep_target(cfg, 0)
  if int(state.round) != 0 or int(state.step) > target:
    sys.exit(f"{args.source}: not a state within round 0's sleep stage "
             f"(round {int(state.round)}, step {int(state.step)})")
  state = trainer.sleep(state, target)
  trainer.close()
  if os.path.exists(args.out):
    shutil.rmtree(args.out)
  print("saved", start.save(state, cfg, args.out))
  shutil.rmtree(work)


if __name__ == "__main__":
  main()
