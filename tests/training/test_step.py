import jax
import jax.numpy as jnp
import numpy as np

from dropamort.training.state import init_state, make_optimizer
from dropamort.training.step import make_train_step


def test_step_compiles_once_and_trains(key, tiny_cfg):
  tx = make_optimizer(tiny_cfg.optim, 40)
  state = init_state(key, tiny_cfg, tx)
  step = make_train_step(tiny_cfg, tx)
  losses = []
  for _ in range(40):
    state, m = step(state, key)
    losses.append(float(m["loss"]))
  assert step._cache_size() == 1
  assert int(state.step) == 40
  assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:5])  # It learns something.


def test_each_step_gets_its_own_batch(key, tiny_cfg):
  """fold_in(key, step): same step -> same loss; next step -> another batch."""
  tx = make_optimizer(tiny_cfg.optim, 10)
  step = make_train_step(tiny_cfg, tx)
  a = step(init_state(key, tiny_cfg, tx), key)[1]["loss"]
  b = step(init_state(key, tiny_cfg, tx), key)[1]["loss"]
  s1 = step(init_state(key, tiny_cfg, tx), key)[0]
  c = step(s1.replace(params=init_state(key, tiny_cfg, tx).params), key)[1]["loss"]
  assert float(a) == float(b) and float(a) != float(c)


def test_nonfinite_loss_skips_the_update(key, tiny_cfg):
  tx = make_optimizer(tiny_cfg.optim, 10)
  state = init_state(key, tiny_cfg, tx)
  before = jax.tree.map(np.asarray, state.params)
  bad = state.replace(decoder_params=jax.tree.map(lambda a: jnp.full_like(a, jnp.nan),
                                                  state.decoder_params))
  after, m = make_train_step(tiny_cfg, tx)(bad, key)
  assert not bool(m["finite"])
  assert int(after.nonfinite) == 1 and int(after.step) == 1
  jax.tree.map(np.testing.assert_array_equal, before, after.params)
