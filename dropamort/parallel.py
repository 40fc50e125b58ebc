"""Data parallelism with ``jax.sharding``: one mesh axis over the batch.

The state is replicated on every device; the simulated batch is sharded along its first
axis, so each device simulates, encodes and differentiates its share inside the one
jitted step, and XLA inserts the gradient all-reduce. Random numbers do not depend on the
sharding (``jax_threefry_partitionable``), so 1 and N devices give the same batch and,
up to float reassociation, the same step. Multi-host: call ``jax.distributed.initialize``
first (``trainer.distributed``); the mesh then spans every process's devices.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from dropamort.config import ConfigError

AXIS = "batch"


def batch_mesh(batch_size: int, devices=None) -> Mesh:
  """A 1-D mesh over ``devices`` (default: all visible ones).

  Raises:
    ConfigError: the global batch does not split evenly over the devices.
  """
  devices = list(jax.devices() if devices is None else devices)
  if batch_size % len(devices):
    raise ConfigError(f"trainer.batch_size must be a multiple of the device count "
                      f"{len(devices)} (got {batch_size})")
  return Mesh(np.array(devices), (AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def shard_batch(tree, mesh: Mesh):
  """Inside jit: constrain every leaf's leading (batch) axis to be split over the mesh."""
  spec = NamedSharding(mesh, P(AXIS))
  return jax.tree.map(lambda a: jax.lax.with_sharding_constraint(a, spec), tree)


def replicate(tree, mesh: Mesh):
  """Places a pytree (the training state) on every device of the mesh."""
  return jax.device_put(tree, replicated(mesh))


def on_one_device(tree):
  """Shapes and dtypes of ``tree`` (arrays or Orbax metadata) placed on the first local
  device: a restore target that does not depend on the layout a checkpoint was saved
  from (8 devices, 1, another host)."""
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=device), tree)
