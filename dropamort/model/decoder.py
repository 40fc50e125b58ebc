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


ASSETS = os.path.join(os.path.dirname(__file__), "assets")
# The packaged parameters of each appearance (and, for "edge", band contrast): the decoder
# fitted to the analytic droplet (scripts/fit_default_decoder.py). "bright" uses "dark"'s.
DEFAULT_PARAMS = {("edge", "dark"): os.path.join(ASSETS, "default_edge_decoder.npz"),
                  ("edge", "either"): os.path.join(ASSETS, "default_edge_either_decoder.npz"),
                  ("free", "dark"): os.path.join(ASSETS, "default_decoder.npz")}


def default_params_path(appearance: str, contrast: str = "dark") -> str:
  """The packaged parameter file of an appearance and band contrast."""
  if appearance == "free" or contrast == "bright":
    contrast = "dark"
  return DEFAULT_PARAMS[(appearance, contrast)]


EDGE_INIT_PX = 0.5  # Width of the droplet's edge (px) before calibration learns it.
SHARP_EDGE_PX = 0.1  # The edge a calibration that searches the outline holds (``sharp``).
RING_INIT_PX = 1.5  # Width of the band inside the edge whose contrast is held (``edge``).
RING_MIN_PX = 0.5  # The band is never narrower than this.
RING_CONTRAST = 0.2  # Least contrast (decoder units, pre-sigmoid) of that band.
CONTRASTS = {"dark": -1.0, "bright": 1.0}  # The band's sign; "either": any colour.
EITHER_EPS = 0.05  # ``either``: the band's colour turns about m = -EITHER_EPS · grey.


class DropletOpticsModel(nn.Module):
  """Pixel value from its nearest droplet: the seed's per-pixel MLP, its output bounded
  relative to r so that r is the droplet's edge with ``appearance="edge"``.

  Inputs per pixel: background (C, pre-sigmoid), dx and dy (offset from the droplet
  centre divided by its radius), the radius r (px) and the composition (T); the MLP also
  sees d = sqrt(dx² + dy²). The MLP's hidden layers are Dense -> LayerNorm -> ReLU; its
  output ``m`` (C) is the droplet's free interior shading. Output, in intensity:
  ``bare + disc · taper · (sigmoid(background + delta) - bare)``, ``bare =
  sigmoid(background)``, where

  - ``disc = sigmoid((1 - d) · r / psf)``: the disc of radius r blurred by the
    microscope's point-spread width ``psf`` (px, parameter ``edge``), 1/2 at d = 1;
  - ``delta = (1 - ring) · m + ring · c``: within ``ring_px`` (parameter ``ring``, at
    least ``RING_MIN_PX``) inside the edge the droplet shows ``c = s · (RING_CONTRAST +
    softplus(s · m))``, at least ``RING_CONTRAST`` darker (``contrast="dark"``, s = -1)
    or brighter (s = +1) than the background in every channel, however the interior is
    shaded; with ``contrast="either"`` it shows ``c = m + (RING_CONTRAST + ε) · u``,
    ``u = (m + ε g) / |m + ε g|`` (g the dark grey direction, ε = ``EITHER_EPS``; u = g
    where m = -ε g), whose colour distance from the background is at least
    ``RING_CONTRAST`` (|c| ≥ |m + ε g| + RING_CONTRAST) in whatever direction the MLP
    paints it, per pixel: a rim that is dark on one side of a droplet and brighter than
    the background on the other (refraction, condensation's lenses) is then inside r,
    not cut off by it.

  The band is what makes r identifiable: a decoder that faded the droplet to the
  background before d = 1 (and so made every r too large) cannot, and nothing but the
  blur of the point-spread width reaches beyond d = 1, so r cannot be made too small
  either: the blur mixes intensities, so a strong shading cannot push the visible edge
  outwards. ``appearance="free"`` (still the default: on the condensation set the
  "edge" decoder scores lower, CHANGELOG.md, issue 25) is the earlier decoder:
  ``sigmoid(background + disc · taper · m)``, no band and the blur in decoder units,
  so the MLP may fade the droplet anywhere inside the disc, or paint it beyond d = 1 by
  shading harder, and r is not its edge.
  """

  channels: int = 3
  hidden: Sequence[int] = (64, 32, 16)
  reach: float = 2.0
  appearance: str = "free"
  contrast: str = "dark"

  @nn.compact
  def __call__(self, background, dx, dy, r, composition):
    d = jnp.sqrt(dx**2 + dy**2 + 1e-12)  # The epsilon keeps the gradient finite at d = 0.
    raw = self.param("edge", lambda _: edge_raw(EDGE_INIT_PX))
    width_px = jax.nn.softplus(raw) + 0.05
    fade_start = 0.5 * (1 + self.reach)
    taper = jnp.clip((self.reach - d) / (self.reach - fade_start), 0.0, 1.0)
    disc = jax.nn.sigmoid((1 - d) * r / width_px) * taper * taper * (3 - 2 * taper)
    h = jnp.concatenate([background, dx[..., None], dy[..., None], d[..., None],
                         r[..., None], composition], axis=-1)
    # Materialize the inputs before the MLP: fused into it, XLA:CPU recomputes the
    # concatenation per use and the decoder runs ~2x slower. Same values and gradients.
    h = jax.lax.optimization_barrier(h)
    for width in self.hidden:
      h = nn.relu(nn.LayerNorm()(nn.Dense(width)(h)))
    delta = nn.Dense(self.channels)(h)
    # sigmoid(z) written as exp(-softplus(-z)): same value, but XLA:CPU then fuses the
    # whole MLP into one loop (jax.nn.sigmoid here made rendering ~3x slower).
    sigmoid = lambda z: jnp.exp(-jax.nn.softplus(-z))
    if self.appearance == "free":
      return sigmoid(background + delta * disc[..., None])
    ring_px = jax.nn.softplus(self.param("ring", lambda _: _inv_softplus(
        RING_INIT_PX - RING_MIN_PX))) + RING_MIN_PX
    ring = jax.nn.sigmoid((ring_px - (1 - d) * r) / width_px)[..., None]
    delta = (1 - ring) * delta + ring * _band(delta, self.contrast)
    # The blur acts on intensities: however strong the droplet's shading, the render
    # is half-way from the background to the droplet at d = 1 and no further outside.
    bare = sigmoid(background)
    return bare + disc[..., None] * (sigmoid(background + delta) - bare)


def _band(m, contrast: str):
  """The band's colour (decoder units, relative to the background) for MLP output m."""
  if contrast == "either":
    grey = -jnp.ones(m.shape[-1], m.dtype) / np.sqrt(m.shape[-1])
    w = m + EITHER_EPS * grey
    norm2 = jnp.sum(w * w, axis=-1, keepdims=True)
    # u = w / |w|, and grey at the one point w = 0 (both branches finite, so is the grad).
    safe = norm2 > 1e-12
    u = jnp.where(safe, w * jax.lax.rsqrt(jnp.where(safe, norm2, 1.0)), grey)
    return m + (RING_CONTRAST + EITHER_EPS) * u
  s = CONTRASTS[contrast]
  return s * (RING_CONTRAST + jax.nn.softplus(s * m))


def _inv_softplus(x: float):
  return jnp.log(jnp.expm1(jnp.asarray(x, jnp.float32)))


def edge_raw(width_px: float):
  """The ``edge`` parameter for an edge ``width_px`` wide (softplus(raw) + 0.05)."""
  return _inv_softplus(width_px - 0.05)


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


def init_params(key, channels: int, types: int, hidden: Sequence[int],
                appearance: str = "free"):
  """Randomly initialized decoder parameters (a plain pytree)."""
  # reach and contrast shape no parameter.
  module = DropletOpticsModel(channels=channels, hidden=tuple(hidden), appearance=appearance)
  z = jnp.zeros((1,))
  return module.init(key, jnp.zeros((1, channels)), z, z, z, jnp.zeros((1, types)))["params"]


def save_params(params, path: str) -> None:
  """Writes decoder parameters as a flat .npz ('Dense_0/kernel', ...)."""
  flat = {"/".join(k): np.asarray(v) for k, v in
          flax.traverse_util.flatten_dict(flax.core.unfreeze(params)).items()}
  tmp = path + ".tmp.npz"
  np.savez(tmp, **flat)
  os.replace(tmp, path)  # Never leave a half-written parameter file behind.


def load_params(path: str, channels: int, types: int, hidden: Sequence[int],
                appearance: str = "free", contrast: str = "dark"):
  """Reads decoder parameters and checks them against the configured shapes.

  Args:
    path: "default" for the appearance's packaged parameters, or a .npz file path.
    channels, types, hidden, appearance, contrast: the configured C, T, hidden widths,
      appearance and band contrast (``DropletOpticsModel``).

  Raises:
    FileNotFoundError: no such file.
    DecoderParamsError: the file's parameter shapes do not fit (C, T, hidden).
  """
  resolved = default_params_path(appearance, contrast) if path == "default" else path
  if not os.path.exists(resolved):
    raise FileNotFoundError(f"decoder parameter file not found: {resolved}")
  with np.load(resolved) as f:
    flat = {tuple(k.split("/")): jnp.asarray(f[k]) for k in f.files}
  params = flax.traverse_util.unflatten_dict(flat)
  expected = jax.eval_shape(
      lambda: init_params(jax.random.key(0), channels, types, hidden, appearance))
  got_shapes = jax.tree.map(jnp.shape, params)
  want_shapes = jax.tree.map(lambda s: s.shape, expected)
  if got_shapes != want_shapes:
    raise DecoderParamsError(
        f"decoder parameters in {resolved} do not fit channels={channels}, types={types}, "
        f"hidden={tuple(hidden)}, appearance={appearance}; refit them with "
        f"`python scripts/fit_default_decoder.py --channels {channels} --types {types} "
        f"--appearance {appearance} --out PATH` and set model.decoder_params=PATH")
  return params

