"""Distributed set-up in one place: one small adapter over Horovod and torch.distributed.

    engine = make_engine("horovod" | "ddp" | "none", device)
    model = engine.wrap_model(model)            # DDP wrapper / nothing; global BatchNorm if asked
    opt = engine.wrap_optimizer(opt, model)     # hvd.DistributedOptimizer / nothing
    engine.broadcast(model, opt)                # rank 0's parameters and optimizer state
    engine.mean(t)                              # metric averaging across ranks
    engine.gather(t)                            # every rank's rows (validation predictions)

Both engines run on CPU (Gloo) and GPU (NCCL). Launch with ``horovodrun -np N`` or
``torchrun --nproc_per_node N`` (or srun; see reference_train/slurm/).
"""
from __future__ import annotations

import datetime
import os

import torch
from torch import nn


class GlobalBatchNorm(nn.BatchNorm2d):
    """BatchNorm whose batch statistics are those of the global batch (all ranks), on any
    device: per-channel sums and sums of squares are all-reduced (differentiably) and combined
    in float64. torch's SyncBatchNorm only runs on GPUs; this one is what makes 1 process x B
    and N processes x B/N take the same step on CPU too."""

    allreduce_sum = None  # set by the engine: differentiable sum over ranks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or GlobalBatchNorm.allreduce_sum is None:
            return super().forward(x)
        c = x.shape[1]
        xf = x.float()
        local = torch.cat([xf.sum(dim=(0, 2, 3)), (xf * xf).sum(dim=(0, 2, 3)),
                           xf.new_tensor([x.numel() // c])]).double()
        tot = GlobalBatchNorm.allreduce_sum(local)
        n = tot[2 * c]
        mean = tot[:c] / n
        var = (tot[c:2 * c] / n - mean * mean).clamp_min(0)
        with torch.no_grad():
            self.num_batches_tracked += 1
            m = self.momentum if self.momentum is not None else 1 / float(self.num_batches_tracked)
            self.running_mean.mul_(1 - m).add_(mean.float(), alpha=m)
            self.running_var.mul_(1 - m).add_((var * n / (n - 1)).float(), alpha=m)
        scale = (self.weight.double() * torch.rsqrt(var + self.eps)).float()
        shift = (self.bias.double() - mean * self.weight.double() * torch.rsqrt(var + self.eps)).float()
        return (xf * scale[None, :, None, None] + shift[None, :, None, None]).to(x.dtype)

    @classmethod
    def convert(cls, module: nn.Module) -> nn.Module:
        """Replace every BatchNorm2d of ``module`` by a GlobalBatchNorm with its state."""
        if isinstance(module, nn.BatchNorm2d) and not isinstance(module, cls):
            new = cls(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
            new.load_state_dict(module.state_dict())
            new.to(module.weight.device)
            return new
        for name, child in module.named_children():
            setattr(module, name, cls.convert(child))
        return module


class Engine:
    """No distribution: one process."""

    name = "none"

    def __init__(self, device: str = "cpu"):
        self.rank, self.world, self.local_rank = 0, 1, 0
        self.device = torch.device(device)

    def wrap_model(self, model: nn.Module, global_bn: bool = False) -> nn.Module:
        return model

    def wrap_optimizer(self, opt, model, fp16_compression: bool = False):
        return opt

    def broadcast(self, model: nn.Module, opt) -> None:
        pass

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        return t

    def mean(self, t: torch.Tensor) -> torch.Tensor:
        return self.sum(t) / self.world

    def gather(self, t: torch.Tensor) -> torch.Tensor:
        """Every rank's ``t`` (the same shape on every rank), concatenated in rank order along
        dimension 0, on every rank."""
        return t

    def barrier(self) -> None:
        pass

    def shutdown(self) -> None:
        GlobalBatchNorm.allreduce_sum = None


class DDPEngine(Engine):
    """torch.distributed: DistributedDataParallel, NCCL on GPUs, Gloo on CPUs (env:// set-up,
    as torchrun and the SLURM script provide)."""

    name = "ddp"

    def __init__(self, device: str = "cpu", timeout_s: int = 600):
        import torch.distributed as dist
        self.dist = dist
        super().__init__(device)
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if self.device.type == "cuda":
            self.device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(self.device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo",
                                    timeout=datetime.timedelta(seconds=timeout_s),
                                    device_id=self.device if self.device.type == "cuda" else None)
        self.rank, self.world = dist.get_rank(), dist.get_world_size()

    def wrap_model(self, model, global_bn=False):
        if global_bn and self.world > 1:
            # torch's differentiable all-reduce (the backward all-reduces the gradients); the
            # functional collective replaces torch.distributed.nn.functional's, which warns
            from torch.distributed import _functional_collectives as fc
            GlobalBatchNorm.allreduce_sum = lambda t: fc.all_reduce(t, "sum", self.dist.group.WORLD)
            model = GlobalBatchNorm.convert(model)
        ids = [self.device.index] if self.device.type == "cuda" else None
        # buffers are identical across ranks with global BatchNorm and rank-local without: never
        # sync them in forward (the init sync is harmless: broadcast() sends rank 0's state anyway).
        # forward_sync_buffers is torch's replacement for the deprecated broadcast_buffers
        return nn.parallel.DistributedDataParallel(model, device_ids=ids, forward_sync_buffers=False)

    def broadcast(self, model, opt):
        for t in list(model.state_dict().values()):
            self.dist.broadcast(t, 0)
        # DDP already broadcast parameters at wrap time; optimizer state is only non-empty on
        # resume, where every rank loads the same checkpoint

    def sum(self, t):
        t = t.clone()
        self.dist.all_reduce(t)
        return t

    def gather(self, t):
        parts = [torch.empty_like(t) for _ in range(self.world)]
        self.dist.all_gather(parts, t.contiguous())
        return torch.cat(parts)

    def barrier(self):
        self.dist.barrier()

    def shutdown(self):
        super().shutdown()
        if self.dist.is_initialized():
            self.dist.destroy_process_group()


class HorovodEngine(Engine):
    """Horovod: DistributedOptimizer (gradient averaging, optional fp16 compression), parameter
    and optimizer-state broadcast, metric averaging; NCCL on GPUs, Gloo on CPUs."""

    name = "horovod"

    def __init__(self, device: str = "cpu"):
        import horovod.torch as hvd
        self.hvd = hvd
        hvd.init()
        super().__init__(device)
        self.rank, self.world, self.local_rank = hvd.rank(), hvd.size(), hvd.local_rank()
        if self.device.type == "cuda":
            self.device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(self.device)

    def wrap_model(self, model, global_bn=False):
        if global_bn and self.world > 1:
            hvd = self.hvd
            GlobalBatchNorm.allreduce_sum = lambda t: hvd.allreduce(t, op=hvd.Sum)
            model = GlobalBatchNorm.convert(model)
        return model

    def wrap_optimizer(self, opt, model, fp16_compression=False):
        hvd = self.hvd
        return hvd.DistributedOptimizer(opt, named_parameters=model.named_parameters(),
                                        compression=hvd.Compression.fp16 if fp16_compression else hvd.Compression.none,
                                        op=hvd.Average)

    def broadcast(self, model, opt):
        self.hvd.broadcast_parameters(model.state_dict(), root_rank=0)
        # Horovod initialises an empty optimizer state by a step with zero gradients, which
        # applies weight decay and seeds momentum with it (measured: conv weights then differ
        # from the 1-process run by 1e-4). Empty state is the same on every rank anyway.
        if opt.state_dict()["state"]:
            self.hvd.broadcast_optimizer_state(opt, root_rank=0)

    def sum(self, t):
        return self.hvd.allreduce(t, op=self.hvd.Sum)

    def gather(self, t):
        return self.hvd.allgather(t)

    def barrier(self):
        self.hvd.allreduce(torch.zeros(1), op=self.hvd.Sum)

    def shutdown(self):
        super().shutdown()
        self.hvd.shutdown()


def make_engine(name: str, device: str = "cpu", timeout_s: int = 600) -> Engine:
    if name == "none":
        return Engine(device)
    if name == "ddp":
        return DDPEngine(device, timeout_s)
    if name == "horovod":
        return HorovodEngine(device)
    raise ValueError(f"unknown engine {name!r} (horovod, ddp, none)")
