"""Shared entry-point plumbing: user-facing failures become one line and a non-zero exit."""

from __future__ import annotations

import logging
import sys

from dropamort.calibration.loop import WakeFailed
from dropamort.config import ConfigError
from dropamort.data.images import ImageError
from dropamort.datasets import DatasetError
from dropamort.inference.restore import CheckpointError
from dropamort.model.decoder import DecoderParamsError
from dropamort.training.checkpoint import IncompatibleCheckpoint
from dropamort.training.loop import NonFiniteLoss

# Failures a user can cause and fix; anything else is a bug and keeps its traceback.
USER_ERRORS = (ConfigError, IncompatibleCheckpoint, NonFiniteLoss, FileNotFoundError,
               DecoderParamsError, ImageError, CheckpointError, WakeFailed, DatasetError)


def quiet_libraries() -> None:
  """Keeps Orbax/absl INFO chatter out of the console and Hydra's log (warnings stay)."""
  for name in ("absl", "orbax", "jax"):
    logging.getLogger(name).setLevel(logging.WARNING)


def fail(message: str, code: int = 2):
  print(f"dropamort: error: {message}", file=sys.stderr)
  sys.exit(code)


def run_or_fail(fn, *args, **kwargs):
  """Calls fn; a user error prints one line 'dropamort: error: ...' and exits with 2."""
  try:
    return fn(*args, **kwargs)
  except USER_ERRORS as err:
    fail(str(err))
