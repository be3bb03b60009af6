"""The build configuration from the command line's options, shared by ``build`` and ``demo``."""
from __future__ import annotations

from pathlib import Path


def expand_clc(paths) -> list[str]:
    """--clc values: a file as it is, a folder as the .tif files in it (anything there that is not
    a regular file, a FIFO say, is named and passed over: reading it would wait forever)."""
    import stat
    import sys
    out = []
    for p in paths:
        p = Path(p)
        if not p.is_dir():
            out.append(str(p))
            continue
        for q in sorted(p.glob("*.tif")):
            if stat.S_ISREG(q.stat().st_mode):
                out.append(str(q))
            else:
                print(f"note: {q}: not a regular file, not read as a CORINE raster", file=sys.stderr, flush=True)
    return out


def build_config(args):
    from bigearth.options import check_sr_model
    from dataset_builder.build import BuildConfig
    check_sr_model(args)
    thresholds = {k: getattr(args, f"max_{k}") for k in ("nodata", "cloud", "cirrus", "shadow", "snow")}
    return BuildConfig(out_dir=args.out, upsampling=args.upsampling, sr_weights=args.sr_weights,
                       sr_device=args.sr_device, sr_precision=args.sr_precision, sr_adapt=args.sr_adapt,
                       sr_model=args.sr_model,
                       clc=expand_clc(args.clc),
                       labels_json=args.labels_json, clc_values=args.clc_values, label_res=args.label_res, thresholds=thresholds,
                       compression=args.compression, merge=args.merge, split_fractions=args.split_fractions,
                       official_lists=args.official_lists, min_label_share=args.min_label_share, strict=args.strict,
                       progress=not args.no_progress)
