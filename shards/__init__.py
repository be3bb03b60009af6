"""WebDataset tar shards of the archive: writing (``write_shards``) and streaming (``load``, ``loader``)."""
from .reader import Normalizer, ShardDataset, ShardError, Skipped, band_stats, load, loader, read_index, verify
from .sample import MEMBERS, SampleError, decode, encode
from .writer import INDEX_NAME, parse_size, plan, write_shards

__all__ = ["write_shards", "plan", "parse_size", "INDEX_NAME", "load", "loader", "read_index", "verify",
           "band_stats", "Normalizer", "ShardDataset", "ShardError", "Skipped", "encode", "decode", "MEMBERS",
           "SampleError"]
