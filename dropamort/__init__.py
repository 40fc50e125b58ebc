"""dropamort: amortized inference of droplet catalogs in microscope images."""

__version__ = "0.1.0"
