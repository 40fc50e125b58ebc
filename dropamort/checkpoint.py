"""The one checkpoint format, written by training and calibration and read by inference.

A run directory holds Orbax checkpoint managers under ``<run>/checkpoints/``:

- ``latest``: every save; what a restart resumes from;
- ``best``: the best ``trainer.best_metric`` on the run's fixed simulated validation set,
  compared while the decoder is the one that set was simulated from (the simulation
  phase, round 0);
- ``calibrated``: calibration only; the lowest reconstruction RMSE on the held-out real
  images, compared at the end of every round.

Each saved step holds two items: ``state`` (the training state pytree: encoder weights,
optimizer state, decoder parameters, fitted prior, counters) and ``config`` (the resolved
configuration as JSON). Inference needs nothing else. Saves are atomic (Orbax writes to a
temporary folder and renames it when complete), so a checkpoint cut short by SIGKILL is
never taken; leftovers are removed when the managers open.

A checkpoint of an older dropamort whose state lacks a field of this version's (the
fitted prior, a prior field, the round counters) is refused with what to do, never
filled in with guesses.
"""

from __future__ import annotations

import dataclasses
import glob
import math
import os

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from dropamort.config import TrainConfig, from_dict, to_dict
from dropamort.encoder.cnn import make_encoder
from dropamort.errors import UserError
from dropamort.model.prior import Prior

STATE, CONFIG = "state", "config"  # The items of every saved step.
LATEST, BEST, CALIBRATED = "latest", "best", "calibrated"

# A model calibrated on ../shared/data/example.jpg ships with the package;
# `checkpoint=example` selects it (the README gives the command that made it).
BUNDLED = {"example": os.path.join(os.path.dirname(__file__), "assets", "example_model")}

# Where ``latest_run`` looks, in order of preference within one run directory.
_PREFERRED = ("checkpoints/calibrated", "checkpoints/best")
SEARCH = ("runs/*/checkpoints/calibrated", "runs/*/checkpoints/best",
          "multirun/*/*/checkpoints/best")

# Config fields that fix parameter shapes: a checkpoint is only resumable if they agree.
SHAPE_FIELDS = {"model": ("channels", "types", "cell", "decoder_hidden"),
                "encoder": ("stem", "stem_depth", "width", "depth")}


class CheckpointError(UserError, RuntimeError):
  """No usable checkpoint: missing, not a checkpoint, unreadable or incompatible."""


class IncompatibleCheckpoint(CheckpointError):
  """The run directory holds a checkpoint made with an incompatible configuration."""


@dataclasses.dataclass(frozen=True)
class Saved:
  """What inference reads from a checkpoint."""

  cfg: TrainConfig
  params: object  # Encoder parameters.
  decoder_params: object
  prior: Prior
  path: str  # The step directory it came from.


def on_one_device(tree):
  """Shapes and dtypes of ``tree`` (arrays or Orbax metadata) placed on the first local
  device: a restore target that does not depend on the layout a checkpoint was saved
  from (8 devices, 1, another host)."""
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=device), tree)


def _has_steps(path: str) -> bool:
  return os.path.isdir(path) and any(d.isdigit() for d in os.listdir(path))


def latest_run(root: str = ".") -> str:
  """The preferred checkpoint directory of the most recently written training run."""
  found = [p for pattern in SEARCH for p in glob.glob(os.path.join(root, pattern))
           if _has_steps(p)]
  if not found:
    raise CheckpointError(
        "no checkpoint given and none found in " + " or ".join(
            os.path.join(os.path.abspath(root), s) for s in SEARCH)
        + "; train one with `python train.py` or pass checkpoint=PATH")
  return max(found, key=os.path.getmtime)


def resolve(path: str) -> tuple[str, int]:
  """A bundled name, a run dir, its checkpoints dir, a manager dir or a step dir ->
  (manager directory, step).

  Raises:
    CheckpointError: no such path, or no saved step inside.
  """
  path = os.path.abspath(BUNDLED.get(path, path))
  if not os.path.exists(path):
    raise CheckpointError(f"{path}: no such checkpoint")
  for sub in _PREFERRED + (BEST, CALIBRATED):
    if _has_steps(os.path.join(path, sub)):
      path = os.path.join(path, sub)
      break
  if os.path.basename(path).isdigit():
    return os.path.dirname(path), int(os.path.basename(path))
  steps = sorted(int(d) for d in os.listdir(path) if d.isdigit()
                 and os.path.isdir(os.path.join(path, d)))
  if not steps:
    raise CheckpointError(f"{path}: not a dropamort checkpoint (no saved steps inside)")
  return path, steps[-1]


def _handlers() -> dict:
  return {STATE: ocp.StandardCheckpointHandler(), CONFIG: ocp.JsonCheckpointHandler()}


def _reader(directory: str) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(directory, item_names=(STATE, CONFIG),
                               item_handlers=_handlers())


def load(path: str) -> Saved:
  """The trained model in a checkpoint, on this process's first device.

  The restore target is built from the checkpoint's own metadata (so inference needs
  neither the optimizer nor any file beyond the checkpoint), whatever device layout it
  was saved from.

  Raises:
    CheckpointError: missing, not a checkpoint, or unreadable (corrupt).
  """
  directory, step = resolve(path)
  try:
    mngr = _reader(directory)
    config = mngr.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
    cfg = from_dict(TrainConfig, config[CONFIG])
    target = on_one_device(mngr.item_metadata(step)[STATE])
    state = mngr.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(target)))[STATE]
    mngr.close()
  except Exception as err:  # Orbax/tensorstore raise many kinds for damaged files.
    msg = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
    raise CheckpointError(f"{directory}/{step}: unreadable checkpoint ({msg})") from None
  where = f"{directory}/{step}"
  _check_encoder_shapes(cfg, state["params"], where)
  if "prior" not in state:
    raise CheckpointError(_older(where, "the fitted prior"))
  fresh = vars(Prior.from_config(cfg.model))
  _check_prior(state["prior"], fresh, where)
  prior = Prior(**{k: state["prior"][k] for k in fresh})
  return Saved(cfg=cfg, params=state["params"], decoder_params=state["decoder_params"],
               prior=prior, path=os.path.join(directory, str(step)))


def _older(where: str, lacks: str) -> str:
  return (f"{where}: made by an older dropamort (its state has no {lacks}); retrain it "
          f"with `python train.py` in a new run directory (hydra.run.dir=...) or use "
          f"checkpoint=example")


def _check_prior(saved_prior, fresh_prior, where: str) -> None:
  """Raises CheckpointError naming the prior fields ``saved_prior`` lacks."""
  lacks = sorted(set(fresh_prior) - set(saved_prior.keys()))
  if lacks:
    raise CheckpointError(_older(where, "prior." + ",".join(lacks)))


def _check_encoder_shapes(cfg: TrainConfig, params, where: str) -> None:
  """Refuses encoder weights that this version's encoder cannot use (an older layout).

  Raises:
    CheckpointError: naming the checkpoint and what to do.
  """
  m = cfg.model
  want = jax.eval_shape(lambda: make_encoder(cfg.encoder, m).init(
      jax.random.key(0), jnp.zeros((1, 8 * m.cell, 8 * m.cell, m.channels)))["params"])
  shapes = lambda tree: jax.tree.map(lambda a: tuple(a.shape), tree)
  if shapes(want) != shapes(params):
    raise CheckpointError(
        f"{where}: made by an older dropamort whose encoder this version cannot read (it "
        f"now predicts a background field per cell); retrain it with `python train.py` "
        f"(the same command and run directory calibrate it again) or use checkpoint=example")


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


def _score(metric: str, sign: float = 1.0):
  """Orbax's ``best_fn``: higher is better; an undefined (NaN) metric never wins."""
  def fn(metrics: dict) -> float:
    v = float(metrics.get(metric, float("nan")))
    return sign * v if math.isfinite(v) else -math.inf
  return fn


class RunCheckpoints:
  """A run directory's checkpoint managers. Holds structure only: states go in and out."""

  def __init__(self, run_dir: str, best_metric: str):
    self.run_dir = os.path.abspath(run_dir)
    self.directory = os.path.join(self.run_dir, "checkpoints")
    if _has_steps(os.path.join(self.run_dir, "calibration")):
      raise CheckpointError(
          f"{self.run_dir} holds a calibration of an older dropamort, which this version "
          f"cannot resume or read; start a new run directory (hydra.run.dir=...)")
    options = lambda **kw: ocp.CheckpointManagerOptions(
        max_to_keep=1, create=True, cleanup_tmp_directories=True, **kw)
    manager = lambda name, **kw: ocp.CheckpointManager(
        os.path.join(self.directory, name), item_names=(STATE, CONFIG),
        item_handlers=_handlers(), options=options(**kw))
    self.latest = manager(LATEST)
    self.best = manager(BEST, best_fn=_score(best_metric), best_mode="max")
    self.calibrated = manager(CALIBRATED, best_fn=_score("real_rmse", -1.0),
                              best_mode="max")

  def _args(self, state, cfg: TrainConfig):
    return ocp.args.Composite(state=ocp.args.StandardSave(state),
                              config=ocp.args.JsonSave(to_dict(cfg)))

  def save(self, state, cfg: TrainConfig) -> None:
    """Saves ``state`` as the latest, named by its ``updates`` count (once each)."""
    step = int(state.updates)
    if step not in self.latest.all_steps():
      self.latest.save(step, args=self._args(state, cfg))

  def save_best(self, state, cfg: TrainConfig, metrics: dict) -> None:
    """Offers ``state`` to ``best`` with its simulated-validation metrics."""
    self._offer(self.best, state, cfg, metrics)

  def save_calibrated(self, state, cfg: TrainConfig, metrics: dict) -> None:
    """Offers ``state`` to ``calibrated`` with its held-out real-image metrics
    (``real_rmse``)."""
    self._offer(self.calibrated, state, cfg, metrics)

  def _offer(self, mngr, state, cfg, metrics: dict) -> None:
    step = int(state.updates)
    if step not in mngr.all_steps():
      mngr.save(step, args=self._args(state, cfg),
                metrics={k: float(v) for k, v in metrics.items()
                         if isinstance(v, (int, float))})

  def wait(self) -> None:
    for mngr in (self.latest, self.best, self.calibrated):
      mngr.wait_until_finished()

  def saved_config(self) -> dict | None:
    step = self.latest.latest_step()
    if step is None:
      return None
    return self.latest.restore(step, args=ocp.args.Composite(
        config=ocp.args.JsonRestore()))[CONFIG]

  def check_compatible(self, cfg: TrainConfig) -> None:
    """Refuses a directory whose checkpoint has other shape-relevant config values.

    Raises:
      IncompatibleCheckpoint: naming each differing field.
    """
    saved = self.saved_config()
    diffs = [] if saved is None else config_differences(saved, cfg)
    if diffs:
      raise IncompatibleCheckpoint(
          f"{self.run_dir} holds a checkpoint of an incompatible config ("
          + "; ".join(diffs) + "); use another run directory (hydra.run.dir=...) or remove it")

  def restore_latest(self, fresh_state, cfg: TrainConfig):
    """The latest saved state, or None if there is none (after ``check_compatible``).

    ``fresh_state`` is a newly initialized state of ``cfg``: it gives the restore target,
    placed on this process's first device whatever layout the checkpoint was saved from.

    Raises:
      CheckpointError: the saved state's fields (or its prior's, or its wake optimizer's
        structure) are not this version's: a checkpoint of an older dropamort.
    """
    self.check_compatible(cfg)
    step = self.latest.latest_step()
    if step is None:
      return None
    where = f"{self.latest.directory}/{step}"
    saved = self.latest.item_metadata(step)[STATE]
    fields = {f.name: getattr(fresh_state, f.name) for f in dataclasses.fields(fresh_state)}
    if set(saved.keys()) != set(fields):
      unknown, lacks = set(saved.keys()) - set(fields), set(fields) - set(saved.keys())
      if unknown:
        raise CheckpointError(f"{where}: a state with fields {sorted(unknown)} this "
                              f"version does not know")
      raise CheckpointError(_older(where, ", ".join(sorted(lacks))))
    _check_prior(saved["prior"], vars(fields["prior"]), where)
    if len(jax.tree.leaves(saved["wake_opt_state"])) != len(
        jax.tree.leaves(fields["wake_opt_state"])):
      raise CheckpointError(_older(where, "wake optimizer state of this version's layout"))
    restored = self.latest.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(on_one_device(fields))))[STATE]
    return fresh_state.replace(**restored)

  def close(self) -> None:
    self.wait()
    for mngr in (self.latest, self.best, self.calibrated):
      mngr.close()


def export(src: str, dst: str) -> str:
  """Writes the model of checkpoint ``src`` to a new checkpoint directory ``dst`` with
  only what inference reads (encoder weights, decoder parameters, fitted prior and the
  config): no optimizer states, so it is small enough to ship.

  Returns:
    The step directory written.
  """
  saved = load(src)
  step = int(os.path.basename(saved.path))
  dst = os.path.abspath(dst)
  if os.path.exists(dst):
    raise CheckpointError(f"{dst}: exists; export writes a new directory")
  mngr = ocp.CheckpointManager(dst, item_names=(STATE, CONFIG), item_handlers=_handlers(),
                               options=ocp.CheckpointManagerOptions(create=True))
  state = {"params": saved.params, "decoder_params": saved.decoder_params,
           "prior": dict(vars(saved.prior))}
  mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                          config=ocp.args.JsonSave(to_dict(saved.cfg))))
  mngr.wait_until_finished()
  mngr.close()
  return os.path.join(dst, str(step))
