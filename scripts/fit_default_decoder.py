"""Fits the optics decoder to the analytic droplet appearance and saves its parameters.

The committed ``dropamort/model/assets/default_edge_decoder.npz`` was made with the
defaults, ``default_edge_either_decoder.npz`` with ``--contrast either``,
``default_decoder.npz`` (the earlier decoder) with ``--appearance free``:

    python scripts/fit_default_decoder.py

Other channel/type counts: ``--channels C --types T --out PATH``, then set
``model.decoder_params=PATH``.
"""

import argparse
import time

import jax

from dropamort.config import ModelConfig
from dropamort.model.appearance import fit_decoder
from dropamort.model.decoder import CONTRASTS, default_params_path, save_params


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--channels", type=int, default=3)
  ap.add_argument("--types", type=int, default=3)
  ap.add_argument("--reach", type=float, default=2.0)
  ap.add_argument("--hidden", type=int, nargs="+", default=list(ModelConfig().decoder_hidden))
  ap.add_argument("--steps", type=int, default=20000)
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--appearance", choices=["edge", "free"], default="edge")
  ap.add_argument("--contrast", choices=[*CONTRASTS, "either"], default="dark")
  ap.add_argument("--out", default=None, help="default: the appearance's packaged file")
  args = ap.parse_args()
  out = args.out or default_params_path(args.appearance, args.contrast)
  t0 = time.perf_counter()
  params, rmse = fit_decoder(jax.random.key(args.seed), channels=args.channels,
                             types=args.types, hidden=tuple(args.hidden), reach=args.reach,
                             steps=args.steps, appearance=args.appearance,
                             contrast=args.contrast)
  save_params(params, out)
  print(f"saved {out}: held-out intensity RMSE {rmse:.4f} "
        f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
  main()
