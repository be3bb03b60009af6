"""bigearth-sr: BigEarthNet-style patches from Sentinel-2 Level-2A products, super-resolved to 10 m."""

__version__ = "0.1.0"
