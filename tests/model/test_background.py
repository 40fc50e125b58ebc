"""The background field: interpolation against a plain reference, and a round trip."""

import jax
import jax.numpy as jnp
import numpy as np

from dropamort.model.background import (cell_background, interpolate, knot_shape, local_mean,
                                        pixel_background)


def reference_bilinear(values, rows, cols):
  """Bilinear interpolation of one 2-D grid, clamped at the edges, written out."""
  gy, gx = values.shape
  out = np.zeros((len(rows), len(cols)))
  for i, r in enumerate(np.clip(rows, 0, gy - 1)):
    for j, c in enumerate(np.clip(cols, 0, gx - 1)):
      r0, c0 = min(int(r), max(gy - 2, 0)), min(int(c), max(gx - 2, 0))
      r1, c1 = min(r0 + 1, gy - 1), min(c0 + 1, gx - 1)
      fr, fc = r - r0, c - c0
      out[i, j] = ((1 - fr) * (1 - fc) * values[r0, c0] + (1 - fr) * fc * values[r0, c1]
                   + fr * (1 - fc) * values[r1, c0] + fr * fc * values[r1, c1])
  return out


def test_interpolation_equals_the_reference(key):
  values = jax.random.normal(key, (2, 5, 7, 3))
  rows = np.array([-0.7, 0.0, 0.3, 2.5, 3.99, 4.0, 5.2])
  cols = np.array([-1.0, 0.5, 1.0, 6.0, 6.4])
  got = np.asarray(interpolate(values, jnp.asarray(rows), jnp.asarray(cols)))
  for b in range(2):
    for c in range(3):
      np.testing.assert_allclose(got[b, :, :, c],
                                 reference_bilinear(np.asarray(values[b, :, :, c]), rows, cols),
                                 atol=1e-6)


def test_a_constant_field_renders_constant_and_cell_values_sit_at_centres(key):
  flat = jnp.full((1, 4, 5, 3), 0.3)
  np.testing.assert_allclose(pixel_background(flat, 4, 16, 20), 0.3, atol=1e-7)
  ramp = jnp.broadcast_to(jnp.arange(5.0)[None, None, :, None], (1, 4, 5, 1))
  pix = np.asarray(pixel_background(ramp, 4, 16, 20))[0, 0, :, 0]
  np.testing.assert_allclose(pix[[2, 6, 10]], [0.125, 1.125, 2.125])
  np.testing.assert_allclose(pix[:2], 0.0)  # Beyond the outermost centre: flat.


def test_field_to_image_to_background_round_trip(key):
  """An illumination gradient (a field linear across the image, as a tilted lamp gives)
  rendered to pixels and read back by the encoder's local-mean feature (logit of the mean
  colour of 7 × 7 cells) gives the field at the cells again."""
  h = w = 128
  cell, knot = 4, 32
  ky, kx = knot_shape(h, w, knot)
  yy, xx = np.meshgrid(np.arange(ky), np.arange(kx), indexing="ij")
  slopes = np.asarray(jax.random.normal(key, (2, 3))) * 0.25  # Per knot, per channel.
  field = jnp.asarray((yy[..., None] * slopes[0] + xx[..., None] * slopes[1])[None])
  mean = jnp.array([[0.2, -0.3, 0.5]])
  per_cell = cell_background(mean, field, grid=(h // cell, w // cell), cell=cell, knot=knot)
  image = jax.nn.sigmoid(pixel_background(per_cell, cell, h, w))
  read = jax.scipy.special.logit(local_mean(image, cell, 7))
  inner = (slice(None), slice(3, -3), slice(3, -3))  # Windows clipped at the edges differ.
  err = np.abs(np.asarray(read - per_cell)[inner])
  assert err.max() < 0.03, err.max()
  assert float(jnp.std(per_cell)) > 0.2  # The field really varies.
  # A field with kinks between knots is smoothed by the 28-px window where it bends.
