"""Are the lab figures' credible intervals right? The rate at which the 90% intervals of
the summary (count, surface coverage, D50, D32) hold the true values of simulated images.

    python bench/lab_figures.py [--checkpoint runs/train] [--dataset 380x507_seed]

On a ``droplet_sim`` set (its true catalog known), per image: dropamort's summary from
``infer`` (the pyramid, 200 posterior samples) against the same figures computed from the
truth (droplets centred in the image; coverage = Σ π r² / image area). A calibrated
interval holds the truth in about 90% of the images. The last line printed is one JSON
object.
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import report  # noqa: E402

import dropamort  # noqa: E402
from dropamort.config import InferConfig  # noqa: E402
from dropamort.datasets import store  # noqa: E402
from dropamort.inference.stats import per_sample  # noqa: E402
from dropamort.model.catalog import to_table  # noqa: E402

FIGURES = {"count": ("count",), "coverage": ("coverage",), "D50": ("diameter_px", "D50"),
           "D32": ("diameter_px", "D32")}


def truth_figures(table: dict, area: float) -> dict:
  r = np.asarray(table["r"], float)
  s = per_sample(np.ones((1, len(r)), bool), r[None], area_px=area, pixel_size=None)
  return {k: float(s[k][0]) for k in FIGURES}


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--checkpoint", default=None)
  ap.add_argument("--dataset", default="380x507_seed")
  ap.add_argument("--data-dir", default="datasets")
  ap.add_argument("--limit", type=int, default=None)
  args = ap.parse_args()
  reader = dropamort.load(args.checkpoint)
  builder = store.open_sim(args.dataset, args.data_dir)
  images, catalog = store.read_sim(builder, args.limit)
  cell = builder.info.metadata["model"]["cell"]
  inside = {k: [] for k in FIGURES}
  width = {k: [] for k in FIGURES}
  for image, table in zip(images, to_table(catalog, cell)):
    h, w = image.shape[:2]
    keep = (table["x"] < w) & (table["y"] < h)
    truth = truth_figures({"r": table["r"][keep]}, h * w)
    lab = reader.infer(image, InferConfig(scale=1.0, samples=200, progress=False,
                                          edge_map=False)).summary  # Truth: read radii.
    lab = {**lab["lab"], "count": lab["count"]}
    for name, path in FIGURES.items():
      iv = lab
      for part in path:
        iv = iv[part]
      lo, hi = iv["ci90"]
      inside[name].append(lo <= truth[name] <= hi)
      width[name].append((hi - lo) / max(abs(truth[name]), 1e-9))
  report(dataset=args.dataset, images=len(images),
         **{f"ci90_rate_{k}": round(float(np.mean(v)), 3) for k, v in inside.items()},
         **{f"ci90_rel_width_{k}": round(float(np.median(v)), 4) for k, v in width.items()})


if __name__ == "__main__":
  main()
