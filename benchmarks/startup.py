"""Start-up of the command line: wall seconds of ``bigearth-sr --help`` and of each subcommand's
``--help`` (which import neither torch nor TensorFlow), beside what the parser used to import
before it stopped doing so (the trainer's module, with torch and torchvision), side by side in
one run, each the median of ``--repeat`` fresh processes.

    python benchmarks/startup.py [--repeat 5]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
ROWS = [("bigearth-sr --help", [str(BIN / "bigearth-sr"), "--help"]),
        *[(f"bigearth-sr {c} --help", [str(BIN / "bigearth-sr"), c, "--help"])
          for c in ("build", "shards", "train", "evaluate", "sr-train", "sr-eval", "demo")],
        ("import reference_train.train (what every call imported before)",
         [sys.executable, "-c", "import reference_train.train"]),
        ("python -c pass (the interpreter alone)", [sys.executable, "-c", "pass"])]


def seconds(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    times: dict[str, list[float]] = {name: [] for name, _ in ROWS}
    for _ in range(args.repeat):  # interleaved: a drift in the machine's load touches every row alike
        for name, cmd in ROWS:
            times[name].append(seconds(cmd))
    print(f"| command | median s ({args.repeat} runs) | min s |\n|---|---|---|")
    for name, ts in times.items():
        print(f"| {name} | {statistics.median(ts):.2f} | {min(ts):.2f} |")


if __name__ == "__main__":
    main()
