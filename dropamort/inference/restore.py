"""Finding and restoring a trained checkpoint: the hand-off from training to inference."""

from __future__ import annotations

import glob
import os

import orbax.checkpoint as ocp

from dropamort.config import TrainConfig, from_dict
from dropamort.training.parallel import on_one_device


class CheckpointError(RuntimeError):
  """No usable checkpoint: missing, not a checkpoint, or unreadable."""


# A model calibrated on ../shared/data/example.jpg (scale 0.25) ships with the package;
# `checkpoint=example` selects it (see the README for the command that made it).
BUNDLED = {"example": os.path.join(os.path.dirname(os.path.dirname(__file__)), "assets",
                                   "example_model")}

SEARCH = ("runs/*/calibrated", "runs/*/checkpoints/best", "multirun/*/*/checkpoints/best")


def latest_training_run(root: str = ".") -> str:
  """The ``best`` checkpoint directory of the most recently written training run."""
  found = [p for pattern in SEARCH for p in glob.glob(os.path.join(root, pattern))
           if any(d.isdigit() for d in os.listdir(p))]
  if not found:
    raise CheckpointError(
        "no checkpoint given and none found in " + " or ".join(
            os.path.join(os.path.abspath(root), s) for s in SEARCH)
        + "; train one with `python train.py` or pass checkpoint=PATH")
  return max(found, key=os.path.getmtime)


def resolve(path: str) -> tuple[str, int]:
  """A run dir, its checkpoints dir, a manager dir (best/latest) or a step dir ->
  (manager directory, step)."""
  path = os.path.abspath(BUNDLED.get(path, path))
  if not os.path.exists(path):
    raise CheckpointError(f"{path}: no such checkpoint")
  for sub in ("calibrated", "checkpoints/best", "best"):
    if os.path.isdir(os.path.join(path, sub)):
      path = os.path.join(path, sub)
      break
  if os.path.basename(path).isdigit():
    return os.path.dirname(path), int(os.path.basename(path))
  steps = sorted(int(d) for d in os.listdir(path) if d.isdigit()
                 and os.path.isdir(os.path.join(path, d)))
  if not steps:
    raise CheckpointError(f"{path}: not a dropamort checkpoint (no saved steps inside)")
  return path, steps[-1]


def restore(path: str):
  """(TrainConfig, encoder params, decoder params) from a checkpoint.

  Raises:
    CheckpointError: missing, not a checkpoint, or unreadable (corrupt).
  """
  directory, step = resolve(path)
  items = ("state", "config")
  try:
    mngr = ocp.CheckpointManager(directory, item_names=items, item_handlers={
        "state": ocp.StandardCheckpointHandler(), "config": ocp.JsonCheckpointHandler()})
    saved = mngr.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
    cfg = from_dict(TrainConfig, saved["config"])
    # The target is built from the checkpoint's own metadata (plain dicts, so inference
    # needs neither the optimizer nor any file beyond the checkpoint), placed on this
    # process's first device whatever device layout training saved it from.
    target = on_one_device(mngr.item_metadata(step)["state"])
    state = mngr.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(target)))["state"]
    mngr.close()
  except CheckpointError:
    raise
  except Exception as err:  # Orbax/tensorstore raise many kinds for damaged files.
    msg = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
    raise CheckpointError(f"{directory}/{step}: unreadable checkpoint ({msg})") from None
  return cfg, state["params"], state["decoder_params"]
