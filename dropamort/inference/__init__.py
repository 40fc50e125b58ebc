"""Inference: restore a checkpoint, one forward pass (tiled when large), tables, pictures,
optional SVI refinement."""
