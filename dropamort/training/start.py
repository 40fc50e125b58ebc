"""The packaged start of calibration: round 0, trained once for every user.

Round 0 of a calibration (``trainer.steps`` sleep steps on simulations of the configured
model, before any real image is looked at) depends on the configuration alone: the model,
its decoder, the encoder, the optimizer and its schedule (whose length counts the
calibration's sleep steps, ``state.total_steps``), the batch size and the seed. For the
default configuration it is the same computation on every machine, about 25 minutes on 2
CPU cores, so its end state ships with the package (``assets/start_model``, made by
``scripts/build_start_model.py``) and a fresh calibration run whose configuration agrees
in all of ``round0_config`` (and whose decoder parameters are the packaged start's) begins
there, at the end of round 0's sleep stage. A run with any other configuration trains
round 0 itself, as before; either way round 0's end, and everything after it, is the same.
"""

from __future__ import annotations

import dataclasses
import os

import jax
import numpy as np
import orbax.checkpoint as ocp

from dropamort.checkpoint import CONFIG, STATE, _handlers, on_one_device
from dropamort.config import TrainConfig, to_dict

START_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "assets", "start_model")

# The configuration that round 0 depends on: whole groups, and single fields of others.
GROUPS = ("model", "encoder", "optim")
FIELDS = {"trainer": ("steps", "batch_size", "seed"), "calibrate": ("rounds", "sleep_steps")}


def round0_config(cfg: dict) -> dict:
  """The part of a configuration (as ``config.to_dict`` writes it) that round 0 depends on."""
  out = {g: cfg.get(g) for g in GROUPS}
  out.update({f"{g}.{n}": cfg.get(g, {}).get(n) for g, names in FIELDS.items() for n in names})
  return out


def _manager(directory: str) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(
      directory, item_names=(STATE, CONFIG), item_handlers=_handlers(),
      options=ocp.CheckpointManagerOptions(create=False, read_only=True))


def differences(cfg: TrainConfig, directory: str | None = None) -> list[str] | None:
  """How ``cfg`` differs from the start's configuration (in ``directory``, default
  ``START_DIR``) in what round 0 depends on (``[]``: it applies); None when there is no
  start."""
  directory = START_DIR if directory is None else directory
  if not os.path.isdir(directory):
    return None
  mngr = _manager(directory)
  step = mngr.latest_step()
  saved = None if step is None else mngr.restore(
      step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))[CONFIG]
  mngr.close()
  if saved is None:
    return None
  have, want = round0_config(saved), round0_config(to_dict(cfg))
  return [k for k in want if have.get(k) != want[k]]


def restore(fresh_state, directory: str | None = None):
  """The start's state (the end of round 0's sleep stage), placed like ``fresh_state``'s
  first device; None if its decoder parameters are not ``fresh_state``'s (the packaged
  default decoder changed since the start was made)."""
  directory = START_DIR if directory is None else directory
  fields = {f.name: getattr(fresh_state, f.name) for f in dataclasses.fields(fresh_state)}
  mngr = _manager(directory)
  step = mngr.latest_step()
  restored = mngr.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(on_one_device(fields))))[STATE]
  mngr.close()
  state = fresh_state.replace(**restored)
  same = jax.tree.map(lambda a, b: bool(np.array_equal(np.asarray(a), np.asarray(b))),
                      state.decoder_params, fresh_state.decoder_params)
  return state if all(jax.tree.leaves(same)) else None


def save(state, cfg: TrainConfig, directory: str) -> str:
  """Writes ``state`` (the end of round 0's sleep stage) as a start into a new
  ``directory``; the configuration is saved without its data group (where the images
  were is not part of round 0)."""
  if os.path.exists(directory):
    raise FileExistsError(f"{directory}: exists; a start is written to a new directory")
  config = {k: v for k, v in to_dict(cfg).items() if k != "data"}
  mngr = ocp.CheckpointManager(directory, item_names=(STATE, CONFIG), item_handlers=_handlers(),
                               options=ocp.CheckpointManagerOptions(create=True))
  step = int(state.step)
  mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                          config=ocp.args.JsonSave(config)))
  mngr.wait_until_finished()
  mngr.close()
  return os.path.join(directory, str(step))
