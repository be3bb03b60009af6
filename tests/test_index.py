"""shards/index.py: the index and verify-shards, through the command line."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bigearth.errors import InputError


def test_cli_shards_and_verify(written, tmp_path):
    path, _, _, index = written
    exe = Path(sys.executable).with_name("bigearth-sr")
    out = tmp_path / "cli"
    r = subprocess.run([str(exe), "shards", str(path), "--out", str(out), "--shard-size", "1.1MB", "--shard-seed", "7",
                        "--no-progress"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "index.json").read_text())["splits"] == index["splits"]
    assert subprocess.run([str(exe), "verify-shards", str(out)], capture_output=True).returncode == 0
    victim = next(out.glob("*.tar"))
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 1
    victim.write_bytes(bytes(data))
    r = subprocess.run([str(exe), "verify-shards", str(out)], capture_output=True, text=True)
    assert r.returncode == 1 and victim.name in r.stdout


@pytest.mark.parametrize("given, message", [
    ("archive", r"is an HDF5 file \(an archive\?\), not a shards folder"),
    ("tar", r"is a tar file \(a shard\?\), not a shards folder"),
    ("build", r"shard index is missing: .* is a build's folder"),
    ("nowhere", r"no such shards folder"),
])
def test_a_path_of_another_kind_is_named(built, written, tmp_path, given, message):
    """An archive, a tar or a build's folder given where the shards are wanted: one line saying
    what was given and what is wanted (issue 35, part 8)."""
    from shards.index import read_index
    path = {"archive": written[0], "tar": next(written[2].glob("*.tar")), "build": built[0],
            "nowhere": tmp_path / "shards-typo"}[given]
    with pytest.raises(InputError, match=message):
        read_index(path)
