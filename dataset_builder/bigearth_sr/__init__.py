"""The TFDS dataset ``bigearth_sr`` (``tfds build bigearth_sr``; see README.md here)."""
from .bigearth_sr_dataset_builder import Builder

__all__ = ["Builder"]
