import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dropamort.model import decoder as D
from dropamort.model.appearance import analytic


def numpy_decoder(params, background, dx, dy, r, comp, hidden=(64, 32, 16), reach=2.0,
                  appearance="edge", contrast="dark"):
  """The decoder written out in numpy: inputs (background, dx, dy, d = |(dx, dy)|, r,
  composition), Dense -> LayerNorm -> ReLU per hidden layer, output Dense m; with the
  "edge" appearance the band within ring px of the edge shows sign·(0.2 + softplus(sign·m))
  instead of m (contrast "dark": sign -1, "bright": +1), or, contrast "either",
  m + 0.25 (m + 0.05 g) / |m + 0.05 g| with g = -(1, 1, 1)/√3; gated by the blurred disc
  sigmoid((1 - d) r / width) and the smoothstep taper to ``reach``: sigmoid(background) + gate · (sigmoid(background + delta) -
  sigmoid(background)) ("edge"), sigmoid(background + gate · delta) ("free")."""
  softplus = lambda z: np.log1p(np.exp(z))
  sigmoid = lambda z: 1 / (1 + np.exp(-z))
  d = np.hypot(dx, dy)
  width = softplus(float(params["edge"])) + 0.05
  t = np.clip((reach - d) / (reach - (1 + reach) / 2), 0, 1)
  gate = sigmoid((1 - d) * r / width) * t * t * (3 - 2 * t)
  h = np.concatenate([background, dx[:, None], dy[:, None], d[:, None], r[:, None], comp], -1)
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  for i in range(len(hidden)):
    h = h @ p[f"Dense_{i}"]["kernel"] + p[f"Dense_{i}"]["bias"]
    mu, var = h.mean(-1, keepdims=True), h.var(-1, keepdims=True)
    h = (h - mu) / np.sqrt(var + 1e-6) * p[f"LayerNorm_{i}"]["scale"] + p[f"LayerNorm_{i}"]["bias"]
    h = np.maximum(h, 0.0)
  delta = h @ p[f"Dense_{len(hidden)}"]["kernel"] + p[f"Dense_{len(hidden)}"]["bias"]
  if appearance == "edge":
    ring_px = softplus(float(p["ring"])) + 0.5
    ring = sigmoid((ring_px - (1 - d) * r) / width)[:, None]
    if contrast == "either":
      w = delta - 0.05 / np.sqrt(3)
      band = delta + 0.25 * w / np.linalg.norm(w, axis=-1, keepdims=True)
    else:
      sign = {"dark": -1.0, "bright": 1.0}[contrast]
      band = sign * (0.2 + softplus(sign * delta))
    delta = (1 - ring) * delta + ring * band
    bare = sigmoid(background)
    return bare + gate[:, None] * (sigmoid(background + delta) - bare)
  return sigmoid(background + gate[:, None] * delta)


@pytest.mark.parametrize("appearance,contrast", [("edge", "dark"), ("edge", "bright"),
                                                 ("edge", "either"), ("free", "dark")])
def test_forward_equals_a_numpy_reference(key, appearance, contrast):
  params = D.init_params(key, channels=3, types=4, hidden=(64, 32, 16), appearance=appearance)
  # Non-trivial LayerNorm parameters, so the reference checks them too.
  params = jax.tree.map(lambda a: a + 0.1 * jax.random.normal(key, a.shape), params)
  module = D.DropletOpticsModel(channels=3, appearance=appearance, contrast=contrast)
  n = 50
  ks = jax.random.split(key, 5)
  inputs = (3 * jax.random.normal(ks[0], (n, 3)), jax.random.normal(ks[1], (n,)),
            jax.random.normal(ks[2], (n,)), jnp.exp(jax.random.normal(ks[3], (n,))),
            jax.random.uniform(ks[4], (n, 4)))
  # Points inside, at and outside the disc, beyond the taper too.
  assert np.any(np.hypot(inputs[1], inputs[2]) < 0.8) and np.any(
      np.hypot(inputs[1], inputs[2]) > 2.0)
  out = module.apply({"params": params}, *inputs)
  want = numpy_decoder(params, *(np.asarray(x, np.float64) for x in inputs),
                       appearance=appearance, contrast=contrast)
  np.testing.assert_allclose(np.asarray(out), want, rtol=2e-4, atol=1e-6)


@pytest.mark.parametrize("contrast", ["dark", "bright"])
def test_the_band_inside_the_edge_keeps_its_contrast(key, contrast):
  """Whatever the MLP paints, the band just inside d = 1 of a large droplet differs from
  the background by at least RING_CONTRAST in the configured direction (decoder units),
  so no decoder can fade a droplet out before its edge."""
  sign = D.CONTRASTS[contrast]
  module = D.DropletOpticsModel(channels=3, appearance="edge", contrast=contrast)
  n = 400
  ks = jax.random.split(key, 4)
  bg = jax.random.uniform(ks[0], (n, 3), minval=-1, maxval=1)
  ang = jax.random.uniform(ks[1], (n,), maxval=2 * np.pi)
  r = jnp.full((n,), 40.0)
  d = 1 - 0.5 / 40  # Half a pixel inside the edge.
  for i in range(3):  # Random decoders, the MLP's output pushed either way.
    params = D.init_params(jax.random.fold_in(ks[2], i), 3, 3, (64, 32, 16), "edge")
    params = {**params, "Dense_3": {"kernel": 5 * params["Dense_3"]["kernel"],
                                    "bias": jnp.full((3,), -sign * 3.0 * i)},
              "edge": D.edge_raw(0.1)}
    out = module.apply({"params": params}, bg, d * jnp.cos(ang), d * jnp.sin(ang), r,
                       jax.random.uniform(ks[3], (n, 3)))
    bare = jax.nn.sigmoid(bg)
    disc = jax.nn.sigmoid(0.5 / 0.1)
    floor = disc * sign * (jax.nn.sigmoid(bg + sign * 0.98 * D.RING_CONTRAST) - bare)
    assert float(jnp.min(sign * (out - bare) - floor)) >= 0
  # The earlier decoder has no such floor: the same push fades the band to the background.
  free = D.DropletOpticsModel(channels=3, appearance="free")
  params = jax.tree.map(jnp.zeros_like, D.init_params(ks[2], 3, 3, (64, 32, 16), "free"))
  out = free.apply({"params": params}, bg, d * jnp.cos(ang), d * jnp.sin(ang), r,
                   jax.random.uniform(ks[3], (n, 3)))
  np.testing.assert_allclose(out, jax.nn.sigmoid(bg), rtol=1e-6)


def test_the_band_of_either_contrast_keeps_its_colour_distance(key):
  """contrast="either": whatever colour the MLP paints the band (darker, brighter, a hue,
  or the background itself, m = 0, and the point m = -EITHER_EPS · grey where the
  band's colour turns), the band half a pixel inside a large droplet's edge stays at least
  RING_CONTRAST (decoder units) from the background."""
  module = D.DropletOpticsModel(channels=3, appearance="edge", contrast="either")
  n = 400
  ks = jax.random.split(key, 4)
  bg = jax.random.uniform(ks[0], (n, 3), minval=-1, maxval=1)
  ang = jax.random.uniform(ks[1], (n,), maxval=2 * np.pi)
  r = jnp.full((n,), 40.0)
  d = 1 - 0.5 / 40
  grey = -np.ones(3) / np.sqrt(3)
  # The MLP's output m: a constant (kernel scale 0), or a random push around it.
  cases = [(np.zeros(3), 0.0), (3.0 * grey, 0.0), (-3.0 * grey, 0.0),
           (-D.EITHER_EPS * grey, 0.0), (np.array([2.0, -2.0, 0.5]), 5.0),
           (np.zeros(3), 5.0)]
  base = D.init_params(ks[2], 3, 3, (64, 32, 16), "edge")
  mean_band = []
  for i, (bias, scale) in enumerate(cases):
    params = {**base, "Dense_3": {"kernel": scale * base["Dense_3"]["kernel"],
                                  "bias": jnp.asarray(bias, jnp.float32)},
              "edge": D.edge_raw(0.1)}
    out = module.apply({"params": params}, bg, d * jnp.cos(ang), d * jnp.sin(ang), r,
                       jax.random.uniform(ks[3], (n, 3)))
    bare = jax.nn.sigmoid(bg)
    disc = jax.nn.sigmoid(0.5 / 0.1)
    shown = bare + (out - bare) / disc  # sigmoid(background + band), the blur undone.
    band = jnp.log(shown / (1 - shown)) - bg
    assert float(jnp.min(jnp.linalg.norm(band, axis=-1))) >= 0.98 * D.RING_CONTRAST, i
    mean_band.append(np.asarray(band.mean(0)))
  # A dark band and a bright one are both allowed: the sign is the MLP's.
  assert np.all(mean_band[1] < -1) and np.all(mean_band[2] > 1), mean_band


def test_architecture_is_the_seeds_widened(key):
  params = D.init_params(key, channels=3, types=3, hidden=(64, 32, 16), appearance="edge")
  shapes = {k: v["kernel"].shape for k, v in params.items() if k.startswith("Dense")}
  # Inputs: background (3), dx, dy, d, r, composition (3).
  assert shapes == {"Dense_0": (10, 64), "Dense_1": (64, 32), "Dense_2": (32, 16),
                    "Dense_3": (16, 3)}
  assert sorted(k for k in params if k.startswith("LayerNorm")) == [
      "LayerNorm_0", "LayerNorm_1", "LayerNorm_2"]
  assert params["edge"].shape == ()  # The edge's width, learned (defocus).
  assert params["ring"].shape == ()  # The band inside the edge, learned.


def test_zero_delta_gives_sigmoid_background(key):
  params = D.init_params(key, channels=3, types=3, hidden=(64, 32, 16), appearance="free")
  params = jax.tree.map(jnp.zeros_like, params)  # Output Dense all zero -> delta = 0.
  bg = jnp.array([[0.3, -1.0, 2.0]])
  out = D.bind(D.DropletOpticsModel(appearance="free"), params)(
      bg, jnp.zeros(1), jnp.zeros(1), jnp.ones(1), jnp.zeros((1, 3)))
  np.testing.assert_allclose(out, 1 / (1 + np.exp(-np.asarray(bg))), rtol=1e-6)


def test_default_params_load_and_draw_a_disc(key):
  params = D.load_params("default", 3, 3, (64, 32, 16))
  decode = D.bind(D.DropletOpticsModel(), params)
  n = 2000
  ks = jax.random.split(key, 5)
  bg = jax.random.uniform(ks[0], (n, 3), minval=0.0, maxval=1.0)
  dx = jax.random.uniform(ks[1], (n,), minval=-2, maxval=2)
  dy = jax.random.uniform(ks[2], (n,), minval=-2, maxval=2)
  r = jnp.exp(jax.random.uniform(ks[3], (n,), minval=0, maxval=np.log(8)))
  comp = jax.random.uniform(ks[4], (n, 3))
  got = decode(bg, dx, dy, r, comp)
  want = analytic(bg, dx, dy, r, comp, reach=2.0)
  assert float(jnp.sqrt(jnp.mean((got - want) ** 2))) < 0.02
  # Inside the disc the droplet differs clearly from the bare background; far out it
  # matches it.
  d = jnp.sqrt(dx**2 + dy**2)
  contrast = jnp.abs(got - jax.nn.sigmoid(bg)).mean(-1)
  assert float(contrast[d < 0.6].mean()) > 0.08
  assert float(contrast[d > 1.9].mean()) < 0.02


def test_load_refuses_wrong_shapes(tmp_path):
  with pytest.raises(ValueError, match="do not fit channels=1, types=3"):
    D.load_params("default", 1, 3, (64, 32, 16))
  with pytest.raises(FileNotFoundError, match="nope.npz"):
    D.load_params(str(tmp_path / "nope.npz"), 3, 3, (64, 32, 16))


def test_save_load_round_trip(key, tmp_path):
  params = D.init_params(key, channels=2, types=5, hidden=(8, 4))
  path = str(tmp_path / "p.npz")
  D.save_params(params, path)
  back = D.load_params(path, 2, 5, (8, 4))
  jax.tree.map(np.testing.assert_array_equal, params, back)
