"""The amortized encoder: a CNN from image to per-cell posterior factors."""
