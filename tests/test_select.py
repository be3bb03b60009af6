"""shards/select.py and `bigearth-sr shards --select`: a query of the catalogue becomes shards
(the README's DuckDB and --select snippets), the index records the selection's digest, the same
names from text or parquet give the same shards, and bad selections are named."""
from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bigearth.errors import InputError
from dataset_builder.build import ARCHIVE_NAME
from dataset_builder.catalogue import CATALOGUE_NAME
from shards.select import read_selection
from shards.writer import write_shards

from .conftest import read_tar

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "bigearth_cli.cli"]


def _snippet(name: str, lang: str) -> str:
    m = re.search(rf"<!-- snippet: {name} -->\n```{lang}\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert m, f"README snippet {name} not found"
    return m.group(1)


def _samples(sdir: Path) -> dict:
    out = {}
    for tar in sorted(sdir.glob("*.tar")):
        out.update(read_tar(tar))
    return out


def _unsharded(samples: dict) -> dict:
    """Samples with meta.json parsed and its shard-specific fields (``shard``, ``crc32c_meta``) left out."""
    out = {}
    for key, members in samples.items():
        meta = {k: v for k, v in json.loads(members["meta.json"]).items() if k not in ("shard", "crc32c_meta")}
        out[key] = {**members, "meta.json": meta}
    return out


def test_readme_query_becomes_shards(built, tmp_path, monkeypatch):
    pytest.importorskip("duckdb")
    monkeypatch.chdir(tmp_path)
    demo = tmp_path / "out" / "demo"
    demo.mkdir(parents=True)
    (demo / "dataset").symlink_to(built[0])
    exec(_snippet("catalogue-duckdb", "python"), {})  # the README's query, run where the README runs it
    cmd = _snippet("select", "bash").strip().replace(".venv/bin/bigearth-sr", " ".join(CLI))
    r = subprocess.run(cmd + " --no-progress", shell=True, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    # the same question asked of the catalogue with geopandas and pandas alone
    cat = gpd.read_parquet(built[0] / CATALOGUE_NAME)
    b = cat.bounds
    want = cat[(cat.status == "kept") & (cat.date.dt.month == 6) & cat.labels.map(lambda v: "Pastures" in list(v))
               & (b.minx > -10.7) & (b.maxx < -5.9) & (b.miny > 51.4) & (b.maxy < 55.4)]
    assert len(want) > 0
    sdir = demo / "shards-pastures"
    assert sorted(_samples(sdir)) == sorted(want.name)
    index = json.loads((sdir / "index.json").read_text())
    digest = hashlib.sha256("\n".join(sorted(want.name)).encode()).hexdigest()
    assert index["config"]["selection"] == {"sha256": digest, "patches": len(want)}
    assert index["samples"] == len(want)
    assert subprocess.run(CLI + ["verify-shards", str(sdir)], capture_output=True).returncode == 0


def test_text_and_parquet_of_the_same_names_give_the_same_shards(built, tmp_path):
    path = built[0] / ARCHIVE_NAME
    names = sorted(gpd.read_parquet(built[0] / CATALOGUE_NAME).query("status == 'kept'").name)[::3]
    txt = tmp_path / "names.txt"
    txt.write_text("# chosen by hand\n" + "\n".join(reversed(names)) + "\n\n" + names[0] + "\n")  # order, a repeat
    pq.write_table(pa.table({"name": names, "other": list(range(len(names)))}), tmp_path / "names.parquet")
    a = write_shards(path, tmp_path / "a", select=txt, progress=False)
    b = write_shards(path, tmp_path / "b", select=tmp_path / "names.parquet", progress=False)
    assert a["config"]["selection"] == b["config"]["selection"] and a["samples"] == len(names)
    assert [e["sha256"] for d in a["splits"].values() for e in d["shards"]] == \
           [e["sha256"] for d in b["splits"].values() for e in d["shards"]]
    whole = write_shards(path, tmp_path / "all", progress=False)
    assert "selection" not in whole["config"]
    every = _samples(tmp_path / "all")
    # the same samples, byte for byte but for the shard each meta.json names (and its own CRC-32C)
    assert _unsharded(_samples(tmp_path / "a")) == _unsharded({n: every[n] for n in names})
    # another selection into the same folder replaces the shards: none is reused from the first
    c = write_shards(path, tmp_path / "a", select=tmp_path / "names.parquet", progress=False)
    assert c == a
    (tmp_path / "one.txt").write_text(names[1] + "\n")
    d = write_shards(path, tmp_path / "a", select=tmp_path / "one.txt", progress=False)
    assert d["samples"] == 1 and sorted(_samples(tmp_path / "a")) == [names[1]]


@pytest.mark.parametrize("case, message", [
    ("unknown", r"1 of its 2 names are not patches of .*bigearth_sr\.h5 \(e\.g\. S2A_MSIL2A_20990101T000000_0_0\)"),
    ("no_column", r"has no 'name' column \(its columns: patch\)"),
    ("empty", r"selects no patch"),
    ("folder", r"is a folder; --select takes a file"),
    ("missing", r"no such file"),
    ("binary", r"is neither a parquet nor UTF-8 text"),
    ("ints", r"column 'name' is int64, not strings"),
])
def test_bad_selections_are_named(built, tmp_path, case, message):
    good = gpd.read_parquet(built[0] / CATALOGUE_NAME).query("status == 'kept'").name.iloc[0]
    f = tmp_path / f"sel_{case}"
    if case == "unknown":
        f.write_text(f"{good}\nS2A_MSIL2A_20990101T000000_0_0\n")
    elif case == "no_column":
        pq.write_table(pa.table({"patch": [good]}), f)
    elif case == "empty":
        f.write_text("# nothing\n\n")
    elif case == "folder":
        f.mkdir()
    elif case == "binary":
        f.write_bytes(b"\xff\xfe\x00\x81" * 10)
    elif case == "ints":
        pq.write_table(pa.table({"name": [1, 2]}), f)
    with pytest.raises(InputError, match=message) as e:
        write_shards(built[0] / ARCHIVE_NAME, tmp_path / "s", select=f, progress=False)
    assert str(f) in str(e.value)
    assert not (tmp_path / "s" / "index.json").exists()
    r = subprocess.run(CLI + ["shards", str(built[0] / ARCHIVE_NAME), "--out", str(tmp_path / "s"), "--select", str(f),
                              "--no-progress"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and str(f) in r.stderr


def test_read_selection_keeps_order_and_drops_repeats(tmp_path):
    f = tmp_path / "s.txt"
    f.write_text("b\n# c\na\n  b  \n\n")
    assert read_selection(f) == ["b", "a"]
