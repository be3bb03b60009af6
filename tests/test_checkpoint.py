"""reference_train/checkpoint.py: a checkpoint that cannot be written because the disk is full
is named as such, and the last good checkpoint stays."""
import argparse

import pytest
import torch

from bigearth.errors import EnvironmentFailure
from reference_train import checkpoint
from reference_train.model import build_model


def _save(path, model, opt):
    args = argparse.Namespace(seed=0, variant="super", labels=43, arch="resnet18", layers="1,1,1,1")
    checkpoint.save_checkpoint(path, model, opt, None, 1, [], args)


def test_a_full_disk_is_named_and_the_last_checkpoint_kept(tmp_path, monkeypatch):
    model = build_model("super", 43, "resnet18", 0.5, (1, 1, 1, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    path = tmp_path / "checkpoint.pt"
    _save(path, model, opt)
    good = path.read_bytes()

    def full_disk(obj, f):  # what torch.save raised when the disk filled up (seen in this suite)
        with open(f, "wb") as fh:
            fh.write(b"partial")
        try:
            raise RuntimeError("basic_ios::clear: iostream error")
        except RuntimeError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 9805696 vs 9805592")

    monkeypatch.setattr(checkpoint.torch, "save", full_disk)
    with pytest.raises(EnvironmentFailure, match=r"checkpoint\.pt: out of disk space while writing"):
        _save(path, model, opt)
    assert path.read_bytes() == good  # the last good checkpoint, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]  # no partial file left

    def other_error(obj, f):
        raise RuntimeError("a bug, not a full disk")
    monkeypatch.setattr(checkpoint.torch, "save", other_error)
    with pytest.raises(RuntimeError, match="a bug"):  # not mistaken for a full disk
        _save(path, model, opt)
