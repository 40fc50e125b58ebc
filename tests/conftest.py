"""Test setup: CPU only, small configs, an explicit PRNG key fixture."""

import os
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=true")
# Most of the suite's time is XLA compiling the same tiny programs again (each train() or
# load() jits afresh). JAX's persistent compilation cache, shared with the subprocesses
# the tests start, compiles each once per machine; it is keyed by program, JAX version
# and device, so a stale entry is never used.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(tempfile.gettempdir(), "dropamort-tests-jax-cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import jax  # noqa: E402
import pytest  # noqa: E402

from dropamort.config import (EncoderConfig, ModelConfig, TrainConfig,  # noqa: E402
                              TrainerConfig)
from dropamort.training.loop import train  # noqa: E402


@pytest.fixture
def key():
  return jax.random.key(0)


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory):
  """A briefly trained tiny model (its quality does not matter here, its plumbing does)."""
  cfg = TrainConfig(
      model=ModelConfig(height=16, width=16, radius_max=4.0),
      encoder=EncoderConfig(stem=4, width=8, depth=2),
      trainer=TrainerConfig(steps=4, batch_size=4, val_every=2, val_images=4,
                            checkpoint_every=2, progress=False))
  run = tmp_path_factory.mktemp("run")
  train(cfg, str(run))
  return str(run)
