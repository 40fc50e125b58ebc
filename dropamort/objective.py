"""Training objectives. NPE / forward KL: E_{(catalog, image) ~ model} -log q(catalog | image).

Minimizing it over simulated pairs fits q to the model's posterior (Papamakarios & Murray
2016; Ambrogioni et al. 2019): the loss is the expected negative log density of the true
catalog, summed over cells (continuous factors only where a droplet is on) and the
per-image background.
"""

from __future__ import annotations

from dropamort.encoder.posterior import CatalogPosterior
from dropamort.model.catalog import Catalog


def npe_loss(posterior: CatalogPosterior, catalog: Catalog):
  """Mean over images of -log q(true catalog | image)."""
  return -posterior.log_prob(catalog).mean()
