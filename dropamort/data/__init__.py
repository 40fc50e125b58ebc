"""Data: reading images (and, later, TFDS datasets)."""
