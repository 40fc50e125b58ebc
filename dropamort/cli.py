"""Shared entry-point plumbing: user-facing failures become one line and a non-zero exit."""

from __future__ import annotations

import logging
import os
import sys

import jax

from dropamort.errors import UserError

# Failures a user can cause and fix; anything else is a bug and keeps its traceback.
USER_ERRORS = (UserError, FileNotFoundError)


def quiet_libraries() -> None:
  """Keeps Orbax/absl INFO chatter out of the console and Hydra's log (warnings stay)."""
  for name in ("absl", "orbax", "jax"):
    logging.getLogger(name).setLevel(logging.WARNING)


def use_compilation_cache() -> None:
  """Keeps compiled XLA programs between runs (JAX's persistent compilation cache), so a
  second ``infer.py`` on images of the same size, or a resumed training run, skips the
  compiles. Small programs count too: refinement's set-up runs the model op by op, which
  is hundreds of small compiles. In ``$DROPAMORT_CACHE_DIR``, else
  ``~/.cache/dropamort/jax`` (a few MB per model and image size); JAX's own
  ``JAX_COMPILATION_CACHE_DIR``, when set, wins. Entries are keyed by program, JAX
  version and device, so a stale one is never used; deleting the folder is always safe."""
  if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    return
  path = os.environ.get("DROPAMORT_CACHE_DIR") or os.path.join(
      os.path.expanduser("~"), ".cache", "dropamort", "jax")
  try:
    os.makedirs(path, exist_ok=True)
  except OSError:
    return  # Unwritable (a read-only home): run without the cache.
  if not os.access(path, os.W_OK):
    return
  jax.config.update("jax_compilation_cache_dir", path)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def check_overrides(conf_dir: str, config_name: str, argv: list[str]) -> None:
  """Composes the configuration from the command line's overrides before Hydra does, so
  that a mistyped value or key (``optim.lr=abc``, ``trainer.stepz=5``) stops with one line
  naming the field instead of Hydra's report. Sweeps (``-m``) are composed per job by
  Hydra itself and are left to it.
  """
  from hydra import compose, initialize_config_dir

  if any(a in ("-m", "--multirun") or a.startswith("--") for a in argv[1:]):
    return
  overrides = [a for a in argv[1:] if not a.startswith("-")]
  try:
    with initialize_config_dir(config_dir=conf_dir, version_base="1.3"):
      compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
  except Exception as err:  # noqa: BLE001 - Hydra/OmegaConf raise many kinds; one line.
    fail(_one_line(err))


def _one_line(err: BaseException) -> str:
  """The most specific message of an exception chain, on one line."""
  while err.__cause__ is not None and not hasattr(err, "full_key"):
    err = err.__cause__
  key = getattr(err, "full_key", None)
  msg = getattr(err, "msg", None) or str(err)
  msg = " ".join(line.strip() for line in str(msg).splitlines() if line.strip()
                 and not line.strip().startswith(("full_key:", "reference_type", "object_type")))
  msg = msg.split(" Config search path")[0]  # Hydra appends where it looked.
  return f"{key}: {msg}" if key else msg


def fail(message: str, code: int = 2):
  print(f"dropamort: error: {message}", file=sys.stderr)
  sys.exit(code)


def run_or_fail(fn, *args, **kwargs):
  """Calls fn; a user error prints one line 'dropamort: error: ...' and exits with 2."""
  try:
    return fn(*args, **kwargs)
  except USER_ERRORS as err:
    fail(str(err))
