"""Sentinel-2 Level-2A products -> BigEarthNet-grid patches -> one HDF5 archive."""
