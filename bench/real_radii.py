"""How read radii and centres compare with labelled ones, by labelled size and by level.

    python bench/real_radii.py --images ../shared/data/condensation --checkpoint runs/condensation2

Reads every image with the checkpoint (no infer.scale: the pyramid), matches the droplets
to ``labels.csv`` under the labelled-set rule of dropamort.metrics (labels r >= 6 px,
predictions r >= 4.2 px, within max(2 px, 0.5 r), one-to-one) and reports the ratio read r
/ labelled r of the matched pairs (median and quartiles) per labelled-radius bin and per
pyramid level that read the droplet, and the mean offset labelled − read centre in x and y
in units of the labelled radius. A ratio (or offset) that is the same at every size and
level points at the droplet's appearance (where the model puts a droplet's centre and edge
against where the labeller did), not at the pyramid. The last line is one JSON object.
"""

import argparse
import os
import sys

import numpy as np
import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import report  # noqa: E402

import dropamort  # noqa: E402
from dropamort.config import InferConfig  # noqa: E402
from dropamort.data.images import find_images, read_image  # noqa: E402
from dropamort.metrics import LABEL_R_MIN, PRED_FACTOR, REAL_MIN_TOL, match  # noqa: E402
from dropamort.pyramid import point_mask  # noqa: E402

BINS = (6, 8, 12, 16, 24, 32, 48, 128)


def pairs(reader, image_paths, labels: pd.DataFrame) -> pd.DataFrame:
  """(r_true, r_read, level, dx, dy) of every matched pair in the images (dx, dy: labelled
  minus read centre, px)."""
  rows = []
  for path in image_paths:
    result = reader.infer(read_image(path, 3)[0], InferConfig(samples=20, progress=False))
    on = point_mask(result.candidates, result.summary["threshold"])
    level = np.asarray(result.candidates["level"])[on]  # Row order of result.table.
    read = {k: result.table[k].to_numpy() for k in ("x", "y", "r")}
    keep = read["r"] >= PRED_FACTOR * LABEL_R_MIN
    read, level = {k: v[keep] for k, v in read.items()}, level[keep]
    lab = labels[(labels.image == os.path.basename(path)) & (labels.r >= LABEL_R_MIN)]
    true = {k: lab[k].to_numpy() for k in ("x", "y", "r")}
    i, j = match(true, read, min_tol=REAL_MIN_TOL, rel_tol=0.5)
    rows += zip(true["r"][i], read["r"][j], level[j], true["x"][i] - read["x"][j],
                true["y"][i] - read["y"][j])
  return pd.DataFrame(rows, columns=["r_true", "r_read", "level", "dx", "dy"])


def ratio_table(df: pd.DataFrame, by) -> list[dict]:
  out = []
  for key, g in df.groupby(by, observed=True):
    q = np.quantile(g.r_read / g.r_true, [0.25, 0.5, 0.75])
    out.append({"group": str(key), "pairs": len(g), "ratio_median": round(float(q[1]), 3),
                "ratio_q25": round(float(q[0]), 3), "ratio_q75": round(float(q[2]), 3),
                "dx_over_r": round(float(np.mean(g.dx / g.r_true)), 3),
                "dy_over_r": round(float(np.mean(g.dy / g.r_true)), 3)})
  return out


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--images", required=True, help="folder holding images/ and labels.csv")
  ap.add_argument("--checkpoint", required=True)
  args = ap.parse_args()
  image_dir = os.path.join(args.images, "images")
  image_dir = image_dir if os.path.isdir(image_dir) else args.images
  labels = pd.read_csv(os.path.join(args.images, "labels.csv"))
  df = pairs(dropamort.load(args.checkpoint), find_images(image_dir), labels)
  df["bin"] = pd.cut(df.r_true, BINS)
  by_size, by_level = ratio_table(df, "bin"), ratio_table(df, "level")
  for name, table in (("labelled radius (px)", by_size), ("pyramid level", by_level)):
    print(f"{name:>22}  pairs  median  [q25, q75] of read r / labelled r   "
          "mean dx / r  dy / r", file=sys.stderr)
    for t in table:
      print(f"{t['group']:>22}  {t['pairs']:5d}  {t['ratio_median']:.3f}  "
            f"[{t['ratio_q25']:.3f}, {t['ratio_q75']:.3f}]  {t['dx_over_r']:+.3f}  "
            f"{t['dy_over_r']:+.3f}", file=sys.stderr)
  report(pairs=len(df), ratio_median=round(float(np.median(df.r_read / df.r_true)), 3),
         dx_over_r=round(float(np.mean(df.dx / df.r_true)), 3),
         dy_over_r=round(float(np.mean(df.dy / df.r_true)), 3),
         by_labelled_radius=by_size, by_level=by_level)


if __name__ == "__main__":
  main()
