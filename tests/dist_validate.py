"""Validation of one fixed model on the learn_data shards, under torchrun (or alone with engine
"none"): tests/test_train.py compares the metrics rank 0 writes with a one-process run."""
import json
import sys

import torch

import shards
from reference_train.distributed import make_engine
from reference_train.model import build_model
from reference_train.train import get_args_parser, validate


def main(engine_name: str, data: str, out: str) -> None:
    engine = make_engine(engine_name, "cpu")
    args = get_args_parser().parse_args(["--data", data, "--output-dir", out + ".d", "--workers", "2",
                                         "--batch-size", "7", "--val-split", "test"])
    torch.manual_seed(0)
    model = build_model("super", 43, "resnet18", 0.0, (1, 1, 1, 1))
    normalizer = shards.Normalizer(shards.read_index(data)[0], "super")
    result = validate(model, args, engine, normalizer)
    if engine.rank == 0:
        with open(out, "w") as fh:
            json.dump(result, fh)
    engine.shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:4])
