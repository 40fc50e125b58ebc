"""Fixed datasets (TFDS, array_record, read without TensorFlow): simulated and real."""


class DatasetError(ValueError):
  """A dataset cannot be built or read (missing path, wrong version, bad annotations)."""
