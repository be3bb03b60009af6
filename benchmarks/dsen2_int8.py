"""DSen2's convolutions in int8 against fp32 and bf16 (issue 31, part 5: "int8 only if it keeps RMSE
within 2 %"): the shipped networks' bodies (head, residual blocks, tail; the global residual is a
sum outside them) quantized statically with torch's FX graph mode for the x86 backend (per-channel
weights, activations calibrated on the timed input itself, the most favourable calibration), then
timed side by side with the fp32 and bf16 forwards the builder runs, in alternating rounds, on one
CPU tile of the size ``infer.DSen2`` picks (its core plus the networks' margin). Reports the
median seconds per tile, the ratio to bf16, and int8's error on the detail (mean absolute
difference from fp32 over fp32's mean absolute detail).

With ``--quality WEIGHTS INPUT...`` it measures instead what int8 does to the RMSE under Wald's
protocol (``sr_lab.evaluate.evaluate_piece``, guard on) on held-out inputs: fp32, bf16 and int8
side by side, int8 calibrated per network on the first window it meets in each piece (the
piece's own input; no truth), pooled over the pieces, with bicubic's RMSE for the ratio.

    python benchmarks/dsen2_int8.py [--repeat 5] [--threads 2] [--model default|paper]
    python benchmarks/dsen2_int8.py --quality runs/sr/cv/6x128-bf16/fold1/dsen2.npz PIECE...
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dataset_builder.sr import SIZES  # noqa: E402
from dataset_builder.sr.infer import DSen2  # noqa: E402


class Body(torch.nn.Module):
    """A network's convolutions alone: what int8 would replace (the residual add stays fp32)."""

    def __init__(self, net):
        super().__init__()
        self.head, self.body, self.tail = net.head, net.body, net.tail

    def forward(self, h):
        return self.tail(self.body(torch.relu(self.head(h))))


def int8(body: Body, x: torch.Tensor) -> torch.nn.Module:
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx
    torch.backends.quantized.engine = "x86"
    with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao
        warnings.simplefilter("ignore")
        prepared = prepare_fx(copy.deepcopy(body), get_default_qconfig_mapping("x86"), (x,))
        with torch.no_grad():
            prepared(x)
        return convert_fx(prepared)


def seconds(f, x) -> float:
    with torch.no_grad():
        t0 = time.perf_counter()
        f(x)
        return time.perf_counter() - t0


class Int8DSen2:
    """The bf16 DSen2 upsampler with its convolutions run in int8 instead, each network calibrated
    on the first window it is given (per instance: one per piece)."""

    name = "dsen2"
    needs_10m = True

    def __init__(self, weights):
        self.inner = DSen2(weights, precision="bf16")
        self.quantized = {}

    def _forward(self, net, precision):
        from dataset_builder.sr.model import SCALE

        def run(x):
            if net not in self.quantized:
                self.quantized[net] = int8(Body(net).eval(), (x / SCALE).contiguous(memory_format=torch.channels_last))
            return self.quantized[net](x / SCALE) * SCALE + x[:, -net.spec.out_bands:]
        return run

    def __call__(self, *args, **kw):
        from dataset_builder.sr import infer
        real = infer._low_precision
        infer._low_precision = self._forward
        try:
            return self.inner(*args, **kw)
        finally:
            infer._low_precision = real


def quality(weights: str, inputs: list[str]) -> None:
    from dataset_builder import upsample
    from sr_lab import metrics, scenes
    from sr_lab.evaluate import evaluate_piece
    sums, bands = {}, {}
    for path in inputs:
        piece, _, _ = scenes.read_piece(Path(path))
        ups = {"fp32": DSen2(weights, precision="fp32"), "bf16": DSen2(weights, precision="bf16"),
               "int8": Int8DSen2(weights), "bicubic": upsample.get("bicubic")}
        res, _ = evaluate_piece(piece, ups)
        for proto, r in res.items():
            bands[proto] = r["bands"]
            for m, one in r["sums"].items():
                sums.setdefault(proto, {})[m] = metrics.add(sums.get(proto, {}).get(m), one)
        print(f"{piece.name}: done", flush=True)
    print("| protocol | fp32 RMSE | bf16 RMSE | int8 RMSE | int8 / fp32 | fp32 / bicubic | int8 / bicubic |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for proto, by in sums.items():
        f = {m: metrics.figures(one, bands[proto])["rmse"] for m, one in by.items()}
        print(f"| {proto} | {f['fp32']:.2f} | {f['bf16']:.2f} | {f['int8']:.2f} | {f['int8'] / f['fp32']:.3f} | "
              f"{f['fp32'] / f['bicubic']:.4f} | {f['int8'] / f['bicubic']:.4f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5, help="alternating rounds; the median is reported")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--model", choices=tuple(SIZES), default="default", help="the shipped networks to time")
    ap.add_argument("--quality", nargs="+", metavar=("WEIGHTS", "INPUT"), default=None,
                    help="measure int8's RMSE instead: a DSen2 bundle, then the held-out inputs")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.quality:
        if len(a.quality) < 2:
            ap.error("--quality: a bundle, then at least one input")
        return quality(a.quality[0], a.quality[1:])
    up = DSen2(model=a.model, precision="fp32")
    print("| network | tile px | fp32 s | bf16 s | int8 s | int8 / bf16 | int8 detail error |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for ratio, net in sorted(up.nets.items()):
        side = up.core + 2 * net.spec.radius
        x = (torch.rand(1, net.spec.in_bands, side, side) * 2).contiguous(memory_format=torch.channels_last)
        fp = Body(copy.deepcopy(net).eval()).to(memory_format=torch.channels_last)
        bf = copy.deepcopy(fp).to(torch.bfloat16)
        q = int8(fp, x)
        xb = x.to(torch.bfloat16)
        runs = {"fp32": (fp, x), "bf16": (bf, xb), "int8": (q, x)}
        for f, arg in runs.values():  # warm-up
            seconds(f, arg)
        times = {k: [] for k in runs}
        for _ in range(a.repeat):
            for k, (f, arg) in runs.items():
                times[k].append(seconds(f, arg))
        med = {k: statistics.median(v) for k, v in times.items()}
        with torch.no_grad():
            ref = fp(x)
            err = float((q(x) - ref).abs().mean() / ref.abs().mean())
        print(f"| {a.model} {ratio}x ({net.spec.blocks} x {net.spec.features}) | {side} | {med['fp32']:.3f} | "
              f"{med['bf16']:.3f} | {med['int8']:.3f} | {med['int8'] / med['bf16']:.2f} | {err:.1%} |", flush=True)


if __name__ == "__main__":
    main()
