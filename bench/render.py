"""Local vs dense renderer on a 380×507×3 image with 3,000 droplets.

    python bench/render.py [--droplets 3000] [--repeats 10]
"""

import argparse
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from common import median_ms, report  # noqa: E402

from dropamort.config import ModelConfig  # noqa: E402
from dropamort.model.catalog import Catalog  # noqa: E402
from dropamort.model.decoder import DropletOpticsModel, bind, load_params  # noqa: E402
from dropamort.model.prior import Prior, radius_distribution  # noqa: E402
from dropamort.model.render import render_dense, render_local  # noqa: E402


def catalog_with(key, cfg: ModelConfig, n: int) -> Catalog:
  """Exactly n droplets in random cells, radii from the prior."""
  gy, gx = cfg.grid_shape
  ks = jax.random.split(key, 5)
  on = jnp.zeros(gy * gx, bool).at[jax.random.permutation(ks[0], gy * gx)[:n]].set(True)
  return Catalog(
      on_BYX=on.reshape(1, gy, gx), offset_BYX2=jax.random.uniform(ks[1], (1, gy, gx, 2)),
      radius_BYX=radius_distribution(cfg, Prior.from_config(cfg)).sample(ks[2], (1, gy, gx)),
      composition_BYXT=jax.random.uniform(ks[3], (1, gy, gx, cfg.types)),
      background_BC=jax.random.uniform(ks[4], (1, cfg.channels)))


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--droplets", type=int, default=3000)
  ap.add_argument("--repeats", type=int, default=10)
  args = ap.parse_args()
  cfg = ModelConfig(height=380, width=507)
  decode = bind(DropletOpticsModel(), load_params("default", 3, 3, cfg.decoder_hidden))
  catalog = catalog_with(jax.random.key(0), cfg, args.droplets)
  local = jax.jit(lambda c: render_local(decode, c, height=cfg.height, width=cfg.width,
                                         cell=cfg.cell, reach=cfg.reach,
                                         reach_cells=cfg.reach_cells)[0])
  on = np.asarray(catalog.on_BYX[0]).ravel()
  centres = np.asarray(catalog.centres_BYX2(cfg.cell)[0]).reshape(-1, 2)[on]
  table = (jnp.asarray(centres[:, 0]), jnp.asarray(centres[:, 1]),
           catalog.radius_BYX[0].reshape(-1)[on],
           catalog.composition_BYXT[0].reshape(-1, cfg.types)[on], jnp.ones(on.sum(), bool),
           catalog.background_BC[0])
  dense = jax.jit(lambda *t: render_dense(decode, *t, height=cfg.height, width=cfg.width,
                                          reach=cfg.reach))
  local_ms = median_ms(local, catalog, repeats=args.repeats)
  dense_ms = median_ms(dense, *table, repeats=args.repeats)
  diff = float(jnp.abs(local(catalog) - dense(*table)).max())
  report(image=[cfg.height, cfg.width, cfg.channels], droplets=int(on.sum()),
         dense_ms=round(dense_ms, 2), local_ms=round(local_ms, 2),
         ratio=round(dense_ms / local_ms, 1), max_abs_diff=diff)


if __name__ == "__main__":
  main()
