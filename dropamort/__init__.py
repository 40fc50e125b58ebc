"""dropamort: amortized inference of droplet catalogs in microscope images."""

__version__ = "0.1.0"


def load(checkpoint=None, **kwargs):
  """A trained droplet reader: ``dropamort.load(path).infer(image_array)``.

  See ``dropamort.inference.api.load``.
  """
  from dropamort.inference.api import load as _load

  return _load(checkpoint, **kwargs)
