"""The amortization gap: ELBO of the encoder's posterior vs after K refinement steps.

    python bench/amortization_gap.py [--checkpoint runs/train] [--images 2]

On the first images of droplet_sim/380x507_seed. The ELBO is that of the refinement
guide (the encoder's detections fixed, their continuous latents and the background
free), estimated with 16 particles and the same key before and after; K = 10, 100 and
1000 each start again from the encoder's posterior. The gap per image is ELBO(K) −
ELBO(0); per pixel it is that over H·W·C.
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import report  # noqa: E402

import dropamort  # noqa: E402
from dropamort.config import InferConfig  # noqa: E402
from dropamort.datasets import store  # noqa: E402
from dropamort.inference.refine import refine_result  # noqa: E402

STEPS = (10, 100, 1000)


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--checkpoint", default=None)
  ap.add_argument("--data-dir", default="datasets")
  ap.add_argument("--images", type=int, default=2)
  args = ap.parse_args()
  reader = dropamort.load(args.checkpoint)
  images, _ = store.read_sim(store.open_sim("380x507_seed", args.data_dir), args.images)
  per_image = []
  for i, img in enumerate(images):
    base = reader.infer(img, InferConfig(scale=1.0, samples=10))
    rec = {"image": i}
    for k in STEPS:
      t0 = time.perf_counter()
      info = refine_result(reader, base,
                           InferConfig(scale=1.0, refine_steps=k)).summary["refinement"]
      rec["elbo_0"] = round(info["elbo_before"], 1)
      rec[f"elbo_{k}"] = round(info["elbo_after"], 1)
      rec[f"seconds_{k}"] = round(time.perf_counter() - t0, 1)
      print(f"image {i}: K={k}: ELBO {info['elbo_before']:.0f} -> {info['elbo_after']:.0f}",
            flush=True)
    per_image.append(rec)
  pixels = images[0].size
  gap = {f"gap_{k}": round(statistics.mean(r[f"elbo_{k}"] - r["elbo_0"] for r in per_image), 1)
         for k in STEPS}
  gap_px = {f"{k}_per_pixel": round(v / pixels, 4) for k, v in zip(STEPS, gap.values())}
  report(dataset="droplet_sim/380x507_seed", images=len(images), per_image=per_image,
         mean_gap=gap, mean_gap_per_pixel_value=gap_px)


if __name__ == "__main__":
  main()
