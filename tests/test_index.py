"""shards/index.py: the index and verify-shards, through the command line."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


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
