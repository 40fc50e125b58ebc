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


def fail(message: str, code: int = 2):
  print(f"dropamort: error: {message}", file=sys.stderr)
  sys.exit(code)


def run_or_fail(fn, *args, **kwargs):
  """Calls fn; a user error prints one line 'dropamort: error: ...' and exits with 2."""
  try:
    return fn(*args, **kwargs)
  except USER_ERRORS as err:
    fail(str(err))
