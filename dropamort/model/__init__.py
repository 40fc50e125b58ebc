"""The generative model: prior catalog, optics decoder, renderer, NumPyro model, simulator."""
