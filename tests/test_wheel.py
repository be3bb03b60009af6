"""Installed the way users install it: the wheel with only the ``tfds`` extra, in a fresh
environment, then ``tfds build`` from another folder, as TFDS's CLI runs it. The citation must
reach the built dataset (the wheel carries the dataset folder's data files)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DUMMY = ROOT / "dataset_builder" / "bigearth_sr" / "dummy_data"


def _run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert r.returncode == 0, f"{cmd}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


@pytest.mark.slow
def test_wheel_with_the_tfds_extra_builds_the_dataset_outside_the_checkout(tmp_path):
    src = tmp_path / "src"  # the tracked files only: no build/ leftovers or ignored outputs reach the wheel
    files = _run(["git", "-C", str(ROOT), "ls-files", "-z"]).stdout.split("\0")
    for rel in filter(None, files):
        if (ROOT / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, src / rel)
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "wheel"), str(src)],
         timeout=600)
    wheel = next((tmp_path / "wheel").glob("bigearth_sr-*.whl"))
    _run([sys.executable, "-m", "venv", str(tmp_path / "env")], timeout=300)
    py = tmp_path / "env" / "bin" / "python"
    _run([str(py), "-m", "pip", "install", "-q", f"{wheel}[tfds]"], timeout=1800)
    manual = tmp_path / "manual"  # raw inputs: the dataset folder's tiny products, copied
    manual.mkdir()
    for p in DUMMY.iterdir():
        if p.name != "bigearth_sr_build":
            (manual / p.name).symlink_to(p)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(BIGEARTH_SR_WORKERS="1", TF_CPP_MIN_LOG_LEVEL="3")
    _run([str(tmp_path / "env" / "bin" / "tfds"), "build", "bigearth_sr/native", "--imports",
          "dataset_builder.bigearth_sr", "--manual_dir", str(manual), "--data_dir", str(tmp_path / "data"),
          "--file_format", "array_record"], cwd=work, env=env, timeout=1800)
    info = next((tmp_path / "data").rglob("dataset_info.json"))
    doc = json.loads(info.read_text())
    assert "Sedona" in doc.get("citation", ""), doc.get("citation")
    assert doc.get("splits") and all(int(s["shardLengths"][0]) > 0 for s in doc["splits"])
