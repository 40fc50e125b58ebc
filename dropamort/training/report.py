"""What training shows people: JSON-lines metrics, a final table and a picture."""

from __future__ import annotations

import json
import time

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from dropamort.figures import draw_catalog, save_figure  # noqa: E402


class MetricsLog:
  """Appends one JSON object per line to ``<run>/metrics.jsonl`` (only the first process
  of a multi-host run writes; the others hold the same values). Every record carries
  ``time``, the wall clock (Unix seconds) when it was written: the differences between
  records are the run's profile, stage by stage."""

  def __init__(self, path: str):
    self.path = path

  def write(self, **record) -> None:
    if jax.process_index() != 0:
      return
    with open(self.path, "a") as f:
      f.write(json.dumps({**record, "time": round(time.time(), 2)}) + "\n")


ROUND_KEYS = [("real_rmse", "held-out real RMSE"), ("flat_rmse", "flat-colour RMSE"),
              ("count_per_image", "droplets per image"), ("noise_sigma", "noise sigma")]

TABLE_KEYS = [("f1", "F1"), ("precision", "precision"), ("recall", "recall"),
              ("position_rmse", "position RMSE (px)"),
              ("radius_rel_error", "radius rel. error"),
              ("composition_mae", "composition MAE"), ("coverage_x", "90% coverage x"),
              ("coverage_r", "90% coverage r"), ("coverage_composition", "90% coverage comp."),
              ("nll", "NLL (per image)")]


def metrics_table(metrics: dict, keys=TABLE_KEYS) -> str:
  """A short aligned text table of the main validation metrics."""
  rows = [(label, metrics[k]) for k, label in keys if k in metrics]
  width = max(len(label) for label, _ in rows)
  return "\n".join(f"  {label:<{width}}  {value:8.3f}" for label, value in rows)


def save_validation_picture(path: str, image_HWC, true_table: dict, pred_table: dict) -> None:
  """The image, then the same image with true (green) and predicted (red) droplets."""
  image = np.clip(np.asarray(image_HWC), 0, 1)
  fig, axes = plt.subplots(1, 2, figsize=(10, 5.3))
  for ax in axes:
    ax.imshow(image, interpolation="nearest")
    ax.set_xlim(-0.5, image.shape[1] - 0.5)
    ax.set_ylim(image.shape[0] - 0.5, -0.5)
    ax.set_axis_off()
  axes[0].set_title("validation image")
  draw_catalog(axes[1], true_table, color="lime", linewidth=1.2)
  draw_catalog(axes[1], pred_table, color="red", linewidth=0.8)
  axes[1].set_title(f"true (green, {len(true_table['x'])}) vs predicted "
                    f"(red, {len(pred_table['x'])})")
  fig.tight_layout()
  save_figure(fig, path)
