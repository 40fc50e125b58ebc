"""Orbax checkpoints: state (weights, optimizer, step, decoder) and resolved config together.

Two managers under ``<run>/checkpoints``: ``latest`` (the most recent save) and ``best``
(the best by a validation metric). Saves are atomic (Orbax writes to a temporary
directory and renames it when complete), so a checkpoint cut short by SIGKILL is never
taken as the latest; leftover temporary directories are removed when the managers open.
"""

from __future__ import annotations

import os

import orbax.checkpoint as ocp

from dropamort.config import TrainConfig, to_dict
from dropamort.training.parallel import on_one_device

# Config fields that fix parameter shapes: a checkpoint is only resumable if they agree.
SHAPE_FIELDS = {"model": ("channels", "types", "cell", "decoder_hidden"),
                "encoder": ("stem", "stem_depth", "width", "depth")}


class IncompatibleCheckpoint(RuntimeError):
  """The run directory holds a checkpoint made with an incompatible configuration."""


def config_differences(saved: dict, cfg: TrainConfig) -> list[str]:
  """Shape-relevant fields whose values differ between a saved config and ``cfg``."""
  now = to_dict(cfg)
  diffs = []
  for group, names in SHAPE_FIELDS.items():
    for name in names:
      a, b = saved.get(group, {}).get(name), now[group][name]
      if a != b:
        diffs.append(f"{group}.{name}: checkpoint {a!r}, config {b!r}")
  return diffs


class Checkpoints:
  """The run's checkpoint managers (structure only; the state is passed in and out)."""

  def __init__(self, directory: str, best_metric: str):
    self.directory = os.path.abspath(directory)
    items = ("state", "config")
    self.latest = ocp.CheckpointManager(
        os.path.join(self.directory, "latest"), item_names=items,
        options=ocp.CheckpointManagerOptions(max_to_keep=1, create=True,
                                             cleanup_tmp_directories=True))
    self.best = ocp.CheckpointManager(
        os.path.join(self.directory, "best"), item_names=items,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=1, create=True, cleanup_tmp_directories=True,
            best_fn=lambda m: m[best_metric], best_mode="max"))

  def save(self, state, cfg: TrainConfig, *, metrics: dict | None = None) -> None:
    """Saves to ``latest``, and to ``best`` when validation ``metrics`` are given."""
    step = int(state.step)
    args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                              config=ocp.args.JsonSave(to_dict(cfg)))
    if step not in self.latest.all_steps():
      self.latest.save(step, args=args)
    if metrics is not None and step not in self.best.all_steps():
      self.best.save(step, args=args, metrics={k: float(v) for k, v in metrics.items()
                                               if isinstance(v, (int, float))})

  def wait(self) -> None:
    self.latest.wait_until_finished()
    self.best.wait_until_finished()

  def saved_config(self) -> dict | None:
    step = self.latest.latest_step()
    if step is None:
      return None
    return self.latest.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))[
        "config"]

  def check_compatible(self, cfg: TrainConfig) -> None:
    """Refuses a directory whose checkpoint has other shape-relevant config values.

    Raises:
      IncompatibleCheckpoint: naming each differing field.
    """
    saved = self.saved_config()
    diffs = [] if saved is None else config_differences(saved, cfg)
    if diffs:
      raise IncompatibleCheckpoint(
          f"{self.directory} holds a checkpoint of an incompatible config ("
          + "; ".join(diffs) + "); use another run directory (hydra.run.dir=...) or remove it")

  def restore_latest(self, abstract_state, cfg: TrainConfig):
    """The latest state, or None if there is none (after ``check_compatible``)."""
    self.check_compatible(cfg)
    step = self.latest.latest_step()
    if step is None:
      return None
    # Restored onto this process's first device, whatever layout it was saved from (the
    # loop replicates it over a mesh when there is one).
    return self.latest.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(on_one_device(abstract_state))))["state"]

  def close(self) -> None:
    self.wait()
    self.latest.close()
    self.best.close()
