"""Fixed datasets (TFDS, array_record, read without TensorFlow): simulated and real."""

from dropamort.errors import UserError


class DatasetError(UserError, ValueError):
  """A dataset cannot be built or read (missing path, wrong version, bad annotations)."""
