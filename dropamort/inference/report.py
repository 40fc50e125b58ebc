"""The folder report: one table row per image, pooled size distribution, a static page.

A folder run writes, beside each image's own outputs, ``summary_all.csv`` (one row per
image with its summary figures), ``size_distribution_all.png`` (every image's droplets
pooled, with a posterior band) and ``report.html``: a page with a thumbnail of each
image's overlay, its count with 90% interval, D50 and coverage, links to its outputs, and
the pooled plot. No server and nothing fetched from the internet: open it in a browser.
"""

from __future__ import annotations

import html
import os

import numpy as np
import pandas as pd

from dropamort.inference.pictures import save_size_distribution

OUTPUTS = ("overlay.png", "size_distribution.png", "reconstruction.png", "residual.png",
           "catalog.csv", "summary.json")
# Fixed diameter bins (px; × pixel size in µm) so that images can be pooled.
EDGES_PX = np.geomspace(1.0, 4096.0, 61)


def summary_row(name: str, summary: dict) -> dict:
  """The flat figures of one image's summary (what ``summary_all.csv`` holds)."""
  row = {"image": name, "count": summary["count"]["median"],
         "count_lo": summary["count"]["ci90"][0], "count_hi": summary["count"]["ci90"][1],
         "thresholded": summary["count"]["thresholded"]}
  lab = summary.get("lab", {})
  for key, value in lab.items():
    if isinstance(value, dict) and "median" in value:
      row.update(_interval_cols(key, value))
    elif isinstance(value, dict):  # A group of intervals: the diameters.
      for sub, iv in value.items():
        row.update(_interval_cols(f"{sub}_{key.split('_', 1)[1]}", iv))
  row["reconstruction_rmse"] = summary.get("reconstruction_rmse")
  return row


def _interval_cols(name: str, iv: dict) -> dict:
  lo, hi = iv["ci90"] if iv["ci90"] is not None else (None, None)
  return {name: iv["median"], f"{name}_lo": lo, f"{name}_hi": hi}


def write_html(path: str, rows: list[dict], folders: dict, pooled: str | None,
               unit_label: str) -> None:
  """The static page (relative links only)."""
  fmt = lambda v, spec=".3g": "–" if v is None or (
      isinstance(v, float) and not np.isfinite(v)) else format(v, spec)
  d50 = next((k for k in rows[0] if k.startswith("D50_")), None) if rows else None
  lines = ["<!DOCTYPE html>", "<html><head><meta charset='utf-8'>",
           "<title>dropamort report</title>",
           "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
           "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
           "td:first-child,th:first-child,td:last-child,th:last-child{text-align:left}"
           "</style></head><body>",
           f"<h1>dropamort: {len(rows)} images</h1>",
           "<p>Counts and figures are posterior medians with 90% credible intervals; "
           "see <a href='summary_all.csv'>summary_all.csv</a> and "
           "<a href='catalog_all.csv'>catalog_all.csv</a>.</p>",
           "<table><tr><th>image</th><th>overlay</th><th>droplets (90% CI)</th>"
           f"<th>D50 ({unit_label})</th><th>coverage</th><th>outputs</th></tr>"]
  root = os.path.dirname(path)
  for row in rows:
    folder = folders[row["image"]]
    link = lambda name: f"<a href='{html.escape(folder)}/{name}'>{name.split('.')[0]}</a>"
    links = " ".join(link(n) for n in OUTPUTS if os.path.exists(os.path.join(root, folder, n)))
    lines.append(
        f"<tr><td>{html.escape(row['image'])}</td>"
        f"<td><a href='{html.escape(folder)}/overlay.png'><img src='{html.escape(folder)}"
        f"/overlay.png' width='200'></a></td>"
        f"<td>{fmt(row['count'], '.0f')} ({fmt(row['count_lo'], '.0f')}–"
        f"{fmt(row['count_hi'], '.0f')})</td>"
        f"<td>{fmt(row.get(d50)) if d50 else '–'}</td>"
        f"<td>{fmt(row.get('coverage'))}</td>"
        f"<td>{links}</td></tr>")
  lines.append("</table>")
  if pooled:
    lines.append(f"<h2>Size distribution, all images</h2><img src='{pooled}' width='700'>")
  lines.append("</body></html>")
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    f.write("\n".join(lines))
  os.replace(tmp, path)


def write_folder_report(out_root: str, rows: list[dict], folders: dict, hist_SB, *,
                        pixel_size: float | None) -> None:
  """summary_all.csv, size_distribution_all.png and report.html into ``out_root``."""
  pd.DataFrame(rows).to_csv(os.path.join(out_root, "summary_all.csv"), index=False)
  unit_label = "µm" if pixel_size is not None else "px"
  pooled = None
  if hist_SB is not None and np.asarray(hist_SB).sum() > 0:
    pooled = "size_distribution_all.png"
    hist = np.asarray(hist_SB)
    save_size_distribution(os.path.join(out_root, pooled), hist,
                           EDGES_PX * (1.0 if pixel_size is None else pixel_size),
                           unit_label=unit_label,
                           title=f"all {len(rows)} images: {np.median(hist.sum(1)):.0f} "
                                 "droplets (posterior median)")
  write_html(os.path.join(out_root, "report.html"), rows, folders, pooled, unit_label)


def add_section(path: str, title: str, body_html: str) -> None:
  """Appends a section (a heading and ``body_html``) to a written report, atomically."""
  with open(path) as f:
    page = f.read()
  section = f"<h2>{html.escape(title)}</h2>\n{body_html}\n"
  page = page.replace("</body></html>", section + "</body></html>")
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    f.write(page)
  os.replace(tmp, path)
