"""What the command line prints after a build and after writing shards (rich tables)."""
from __future__ import annotations

from pathlib import Path


def console():
    """A rich console that never cuts a line: in a terminal its width, elsewhere (a pipe, a SLURM
    log) wide enough for any tile id and free of colour and cursor codes."""
    import sys

    from rich.console import Console
    if sys.stdout.isatty():
        return Console()
    return Console(width=200, no_color=True, force_terminal=False, highlight=False)


def failure_line(key: str, err: str) -> str:
    """``<file>: <what is wrong>``: the error as recorded when it names its file (an InputError
    does), else prefixed with the input it belongs to."""
    err = " ".join(str(err).split())  # one line, whatever the message held
    head = err.split(": ", 1)[0]
    names_a_file = err.startswith(key) or "/" in head or head.endswith((".SAFE", ".zip", ".tif", ".json", ".parquet"))
    return err if names_a_file else f"{key}: {err}"


def print_summary(manifest: dict, out: Path) -> None:
    import sys

    from rich.table import Table

    con = console()
    t = Table(title=f"bigearth-sr build -> {out}")
    t.add_column("tile / product", overflow="fold")
    t.add_column("kept", justify="right")
    t.add_column("dropped", justify="right")
    t.add_column("decode s", justify="right")
    t.add_column("total s", justify="right")
    tiles = manifest["tiles"]
    for tid, info in tiles.items():
        t.add_row(tid, str(info["kept"]), str(sum(info["drops"].values())),
                  str(info.get("seconds_decode", "")), str(info.get("seconds_total", "")))
    for tid in manifest["tiles_failed"]:
        t.add_row(f"[red]{tid}[/red]", "-", "-", "", "[red]failed[/red]")
    t.add_section()
    t.add_row(f"total: {len(tiles)} built, {len(manifest['tiles_failed'])} failed", str(manifest["patches"]),
              str(manifest.get("dropped_total", sum(manifest["dropped"].values()))),
              f"{sum(i.get('seconds_decode') or 0 for i in tiles.values()):.1f}",
              f"{manifest.get('seconds', 0):.1f} wall")
    con.print(t)
    con.print(f"patches: {manifest['patches']}  per split: {manifest['patches_per_split']}")
    con.print(f"dropped by reason: {manifest['dropped']}")
    for note in manifest.get("notes", []):
        con.print(f"note: {note}")
    for name, sha in manifest["outputs"].items():
        con.print(f"{name}  sha256 {sha[:16]}…")
    ignored = manifest.get("inputs_ignored") or {}
    if ignored:
        first = next(iter(ignored.items()))
        con.print(f"{len(ignored)} entr{'y' if len(ignored) == 1 else 'ies'} of the input folders not used "
                  f"(inputs_ignored in manifest.json), e.g. {first[0]}: {first[1]}")
    failed = manifest["tiles_failed"]
    # each failure whole, on a line of its own, whatever the terminal's width: the reason is
    # what the user acts on (the manifest keeps the same text)
    for key, err in failed.items():
        print(f"error: {failure_line(key, err)}", file=sys.stderr, flush=True)
    if not manifest["patches"]:
        from dataset_builder.archive import FAILED_MANIFEST_NAME
        print(f"nothing was built: {nothing_built(manifest)}; no archive was written, and "
              f"{out / FAILED_MANIFEST_NAME} records why", file=sys.stderr, flush=True)
    elif failed:
        print(f"{len(failed)} input(s) failed (listed above and in {out / 'manifest.json'}); the others were built; "
              f"fix or remove them and rerun the same command: what is built is kept", file=sys.stderr, flush=True)


def nothing_built(manifest: dict) -> str:
    """Why a build kept no patch: its inputs failed, or screening dropped every patch, or both."""
    failed, built = len(manifest["tiles_failed"]), len(manifest["tiles"])
    dropped = ", ".join(f"{k} {v}" for k, v in sorted(manifest["dropped"].items()) if v)
    why = []
    if failed:
        why.append(f"{'all ' if not built else ''}{failed} input(s) failed (listed above)")
    if built:
        why.append(f"the {built} input(s) read kept no patch (dropped: {dropped or 'none'})")
    return " and ".join(why) or "no input was given"


def print_plan(plan: dict, out: Path) -> None:
    """``build --dry-run``: what the build will take (``dataset_builder.plan``)."""
    i, b = plan["inputs"], plan["bytes"]
    from bigearth.files import size_text as gb
    for line in plan.get("folders", []):  # a folder of products, taken for the products it holds
        print(line)
    print(f"plan for {out} (from the inputs' metadata and the products' SCL bands; nothing is built):")
    print(f"  inputs: {i['products']} product(s), {i['bigearthnet_v1_acquisitions']} BigEarthNet v1 acquisition(s) "
          f"(by the folders' names), "
          f"{i['bigearthnet_v2_products']} BigEarthNet v2 product(s): {i['grid_patches_or_folders']} grid patches or "
          f"patch folders; {len(i['failed'])} input(s) that cannot be read, {i['ignored']} entr(y/ies) not used")
    for key, err in i["failed"].items():
        print(f"  error: {failure_line(key, err)}")
    print(f"  patches expected: {plan['patches']} (within {plan['expected_error']:.0%}: products screened by their "
          f"SCL band as the build screens them, read in {plan['scl_read_s']:.0f} s; patches without labels and inputs "
          f"that fail while built are not foreseen), per split {plan['patches_per_split']}")
    print(f"  screened out (expected): {plan['screened'] or 'none'}")
    print(f"  disk: archive {gb(b['archive'])}, {gb(b['build_peak'])} at the build's peak (parts and archive), "
          f"shards {gb(b['shards'])}; free at {out}: {gb(b['free']) if b['free'] is not None else 'unknown (its file system cannot be asked)'}")
    if plan["disk_refusal"]:
        print(f"  NOT ENOUGH DISK, the build would be refused: {plan['disk_refusal']}")
    sec = plan["seconds"]
    took = f"{sec:.0f} s" if sec < 120 else f"{sec / 60:.0f} min" if sec < 7200 else f"{sec / 3600:.1f} h"
    for note in plan.get("notes", []):
        print(f"  note: {note}")
    print(f"  time: about {took} with {plan['workers']} worker(s) "
          f"({plan['workers_why']}), {plan['upsampling']} super-resolution; from the per-patch costs measured on "
          f"this project's 2-core machine (benchmarks/RESULTS.md): a faster or busier machine differs")


def print_shards(index: dict, out: Path) -> None:
    from rich.table import Table
    t = Table(title=f"shards -> {out}")
    for col in ("split", "shards", "samples", "MB"):
        t.add_column(col, justify="right" if col != "split" else "left")
    for split, doc in index["splits"].items():
        t.add_row(split, str(len(doc["shards"])), str(doc["samples"]), f"{doc['bytes'] / 1e6:.1f}")
    console().print(t)
