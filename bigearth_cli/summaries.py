"""What the command line prints after a build and after writing shards (rich tables)."""
from __future__ import annotations

from pathlib import Path


def print_summary(manifest: dict, out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console()
    t = Table(title=f"bigearth-sr build -> {out}")
    t.add_column("tile / product")
    t.add_column("kept", justify="right")
    t.add_column("dropped", justify="right")
    t.add_column("decode s", justify="right")
    t.add_column("total s", justify="right")
    for tid, info in manifest["tiles"].items():
        t.add_row(tid, str(info["kept"]), str(sum(info["drops"].values())),
                  str(info.get("seconds_decode", "")), str(info.get("seconds_total", "")))
    for tid, err in manifest["tiles_failed"].items():
        t.add_row(f"[red]{tid}[/red]", "-", "-", "", f"[red]{err[:80]}[/red]")
    con.print(t)
    con.print(f"patches: {manifest['patches']}  per split: {manifest['patches_per_split']}")
    con.print(f"dropped by reason: {manifest['dropped']}")
    for name, sha in manifest["outputs"].items():
        con.print(f"{name}  sha256 {sha[:16]}…")
    ignored = manifest.get("inputs_ignored") or {}
    if ignored:
        first = next(iter(ignored.items()))
        con.print(f"{len(ignored)} entr{'y' if len(ignored) == 1 else 'ies'} of the input folders not used "
                  f"(inputs_ignored in manifest.json), e.g. {first[0]}: {first[1]}")
    if manifest["tiles_failed"]:
        con.print(f"[red]{len(manifest['tiles_failed'])} input(s) failed; see manifest.json[/red]")


def print_shards(index: dict, out: Path) -> None:
    from rich.console import Console
    from rich.table import Table
    t = Table(title=f"shards -> {out}")
    for col in ("split", "shards", "samples", "MB"):
        t.add_column(col, justify="right" if col != "split" else "left")
    for split, doc in index["splits"].items():
        t.add_row(split, str(len(doc["shards"])), str(doc["samples"]), f"{doc['bytes'] / 1e6:.1f}")
    Console().print(t)
