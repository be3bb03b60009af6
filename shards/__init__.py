"""WebDataset tar shards of the archive: writing (``write_shards``) and streaming (``load``, ``loader``)."""
from .stream import ShardError, Skipped
from .index import INDEX_NAME, read_index, verify
from .hf import hf_features
from .normalize import Normalizer, band_stats
from .reader import ShardDataset, load, loader
from .sample import MEMBERS, SampleError, decode, encode
from .writer import parse_size, plan, write_shards

__all__ = ["write_shards", "plan", "parse_size", "INDEX_NAME", "load", "loader", "read_index", "verify",
           "band_stats", "Normalizer", "ShardDataset", "ShardError", "Skipped", "encode", "decode", "MEMBERS",
           "SampleError", "hf_features"]
