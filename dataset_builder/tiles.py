"""Real Sentinel-2 MGRS tiles (CRS and upper-left corner), used by the synthetic generator.

Corners are those of the real tiles (from real products' MTD_TL.xml, or derived from the
BigEarthNet patch coordinates), so synthetic patches land on the real BigEarthNet grid.
"""
from __future__ import annotations

REAL_TILES: dict[str, tuple[int, float, float]] = {
    # tile: (EPSG, ULX, ULY)
    "T33UUP": (32633, 300000.0, 5400000.0),
    "T29UPU": (32629, 600000.0, 5900040.0),
    "T35VPK": (32635, 600000.0, 7000020.0),
    "T34VFJ": (32634, 600000.0, 6400020.0),
    "T34UCF": (32634, 300000.0, 6100020.0),
}
FULL_TILE_M = 109_800


# the embedded default's products (tile, date, mission, processing baseline), old and new baselines;
# further products revisit these tiles 10 days later each round
DEFAULT_SCENES = (
    ("T33UUP", "20170613T101031", "S2A", "05.00"),
    ("T29UPU", "20170617T113321", "S2A", "02.14"),
    ("T35VPK", "20180204T094159", "S2B", "05.09"),
    ("T34VFJ", "20170823T094031", "S2A", "04.00"),
    # a fifth tile so that the tile-disjoint 60/20/20 split of the default set has a test tile
    ("T34UCF", "20180412T094031", "S2A", "02.07"),
)
