"""A few SGD steps of the reference model, data-parallel: rank r of N takes rows r*B/N.. of
each global batch of B. Run under torchrun / horovodrun (or alone with engine "none") by
tests/test_train.py, which compares the weights rank 0 saves."""
import sys

import torch
from torch import nn

from reference_train.distributed import make_engine
from reference_train.model import build_model, param_groups


def main(engine_name: str, out: str, global_bn: bool) -> None:
    engine = make_engine(engine_name, "cpu")
    torch.manual_seed(0)
    model = build_model("super", 43, "resnet18", 0.0, (1, 1, 1, 1))
    model = engine.wrap_model(model, global_bn)
    raw = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    opt = torch.optim.SGD(param_groups(raw, 1e-4), lr=0.1, momentum=0.9, nesterov=True)
    opt = engine.wrap_optimizer(opt, raw)
    engine.broadcast(raw, opt)
    g = torch.Generator().manual_seed(1)
    batch = 8
    per = batch // engine.world
    lo = engine.rank * per
    for _ in range(3):
        x = torch.randn(batch, 12, 48, 48, generator=g)
        y = (torch.rand(batch, 43, generator=g) < 0.2).float()
        loss = nn.functional.binary_cross_entropy_with_logits(model(x[lo:lo + per]), y[lo:lo + per])
        opt.zero_grad()
        loss.backward()
        opt.step()
    if engine.rank == 0:
        torch.save(raw.state_dict(), out)
    engine.shutdown()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3] == "1")
