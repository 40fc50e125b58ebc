"""Calibrating the generative model on real images (wake phase, empirical-Bayes prior)."""
