"""The optics decoder: the seed's per-pixel MLP, and loading its parameters."""

from __future__ import annotations

import os
from typing import Sequence

import flax.core
import flax.linen as nn
import flax.traverse_util
import jax
import jax.numpy as jnp
import numpy as np

from dropamort.errors import UserError


class DecoderParamsError(UserError, ValueError):
  """Decoder parameters that do not fit the configured shapes."""


DEFAULT_PARAMS = os.path.join(os.path.dirname(__file__), "assets", "default_decoder.npz")


EDGE_INIT_PX = 0.5  # Width of the droplet's edge (px) before calibration learns it.
SHARP_EDGE_PX = 0.1  # The edge a calibration that searches the outline holds (``sharp``).


class DropletOpticsModel(nn.Module):
  """Pixel value from its nearest droplet: the seed's model, wider, with the normalized
  distance as an extra input and its effect confined to the droplet's disc.

  Inputs per pixel: background (C, pre-sigmoid), dx and dy (offset from the droplet
  centre divided by its radius), the radius r (px) and the composition (T); the MLP also
  sees d = sqrt(dx² + dy²), so rims and highlights (functions of d) need no hidden unit
  to build the square root. Output: ``sigmoid(background + edge · delta)`` with ``delta``
  from an MLP whose hidden layers are Dense -> LayerNorm -> ReLU, and ``edge`` a soft step
  from 1 inside the disc to 0 outside it, centred on d = 1 with a learned width in pixels
  (defocus), tapered to 0 at ``reach``. The step is what makes r the droplet's visible
  radius: without it a decoder fitted to real images can paint a droplet's rim outside
  d = 1 and every radius it explains comes out too small.
  """

  channels: int = 3
  hidden: Sequence[int] = (64, 32, 16)
  reach: float = 2.0

  @nn.compact
  def __call__(self, background, dx, dy, r, composition):
    d = jnp.sqrt(dx**2 + dy**2 + 1e-12)  # The epsilon keeps the gradient finite at d = 0.
    raw = self.param("edge", lambda _: edge_raw(EDGE_INIT_PX))
    width_px = jax.nn.softplus(raw) + 0.05
    fade_start = 0.5 * (1 + self.reach)
    taper = jnp.clip((self.reach - d) / (self.reach - fade_start), 0.0, 1.0)
    edge = jax.nn.sigmoid((1 - d) * r / width_px) * taper * taper * (3 - 2 * taper)
    h = jnp.concatenate([background, dx[..., None], dy[..., None], d[..., None],
                         r[..., None], composition], axis=-1)
    # Materialize the inputs before the MLP: fused into it, XLA:CPU recomputes the
    # concatenation per use and the decoder runs ~2x slower. Same values and gradients.
    h = jax.lax.optimization_barrier(h)
    for width in self.hidden:
      h = nn.relu(nn.LayerNorm()(nn.Dense(width)(h)))
    delta = nn.Dense(self.channels)(h) * edge[..., None]
    # sigmoid(z) written as exp(-softplus(-z)): same value, but XLA:CPU then fuses the
    # whole MLP into one loop (jax.nn.sigmoid here made rendering ~3x slower).
    return jnp.exp(-jax.nn.softplus(-(background + delta)))


def edge_raw(width_px: float):
  """The ``edge`` parameter for an edge ``width_px`` wide (softplus(raw) + 0.05)."""
  return jnp.log(jnp.expm1(jnp.asarray(width_px - 0.05, jnp.float32)))


def edge_width(params) -> float:
  """The edge width (px) of decoder parameters."""
  return float(jax.nn.softplus(params["edge"]) + 0.05)


def sharp(params):
  """The parameters with the edge ``SHARP_EDGE_PX`` wide: the decoder then paints nothing
  beyond a droplet's radius, so the search of where droplets' outlines lie
  (``training.outline``) cannot be traded for a soft edge painted outside r."""
  return {**params, "edge": edge_raw(SHARP_EDGE_PX)}


def bind(module: DropletOpticsModel, params):
  """The decoder as a function of its per-pixel inputs, parameters fixed."""
  return lambda *inputs: module.apply({"params": params}, *inputs)


def init_params(key, channels: int, types: int, hidden: Sequence[int]):
  """Randomly initialized decoder parameters (a plain pytree)."""
  module = DropletOpticsModel(channels=channels, hidden=tuple(hidden))  # reach: no params
  z = jnp.zeros((1,))
  return module.init(key, jnp.zeros((1, channels)), z, z, z, jnp.zeros((1, types)))["params"]


def save_params(params, path: str) -> None:
  """Writes decoder parameters as a flat .npz ('Dense_0/kernel', ...)."""
  flat = {"/".join(k): np.asarray(v) for k, v in
          flax.traverse_util.flatten_dict(flax.core.unfreeze(params)).items()}
  tmp = path + ".tmp.npz"
  np.savez(tmp, **flat)
  os.replace(tmp, path)  # Never leave a half-written parameter file behind.


def load_params(path: str, channels: int, types: int, hidden: Sequence[int]):
  """Reads decoder parameters and checks them against the configured shapes.

  Args:
    path: "default" for the packaged parameters, or a .npz file path.
    channels, types, hidden: the configured C, T and hidden widths.

  Raises:
    FileNotFoundError: no such file.
    DecoderParamsError: the file's parameter shapes do not fit (C, T, hidden).
  """
  resolved = DEFAULT_PARAMS if path == "default" else path
  if not os.path.exists(resolved):
    raise FileNotFoundError(f"decoder parameter file not found: {resolved}")
  with np.load(resolved) as f:
    flat = {tuple(k.split("/")): jnp.asarray(f[k]) for k in f.files}
  params = flax.traverse_util.unflatten_dict(flat)
  expected = jax.eval_shape(lambda: init_params(jax.random.key(0), channels, types, hidden))
  got_shapes = jax.tree.map(jnp.shape, params)
  want_shapes = jax.tree.map(lambda s: s.shape, expected)
  if got_shapes != want_shapes:
    raise DecoderParamsError(
        f"decoder parameters in {resolved} do not fit channels={channels}, types={types}, "
        f"hidden={tuple(hidden)}; refit them with "
        f"`python scripts/fit_default_decoder.py --channels {channels} --types {types} "
        f"--out PATH` and set model.decoder_params=PATH")
  return params

