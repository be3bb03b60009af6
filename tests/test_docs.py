"""The docs' code blocks run as written (the README's own snippets are run by the tests of the
modules they use): docs/tfds.md's build commands and its loading code, from a fresh folder."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT


def snippet(doc: str, name: str, lang: str) -> str:
    text = (ROOT / doc).read_text()
    m = re.search(rf"<!-- snippet: {name} -->\n```{lang}\n(.*?)```", text, re.S)
    assert m, f"{doc}: snippet {name} not found"
    return m.group(1)


@pytest.mark.slow
def test_tfds_page_builds_and_loads_as_written(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    bindir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "TF_CPP_MIN_LOG_LEVEL": "2",
           "BIGEARTH_SR_WORKERS": "2"}
    r = subprocess.run(["bash", "-euo", "pipefail", "-c", snippet("docs/tfds.md", "tfds-build", "bash")], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    # one build of the source, DSen2's, served both configs
    builds = tmp_path / "tfds_data" / "downloads" / "bigearth_sr_build"
    assert sorted(p.name for p in builds.iterdir()) == ["dsen2"]
    manifest = json.loads((builds / "dsen2" / "manifest.json").read_text())
    r = subprocess.run([sys.executable, "-c", snippet("docs/tfds.md", "tfds-load", "python")], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    n = r.stdout.strip().splitlines()[-1].split(" ", 1)[0]  # the snippet prints the train split's length first
    assert int(n) == manifest["patches_per_split"]["train"]
    assert "(3, 120, 120)" in r.stdout and "(12, 120, 120) (43,) uint8" in r.stdout
    assert not (tmp_path / "~").exists()


def test_super_resolution_page_calls_every_method_alike(tmp_path):
    r = subprocess.run([sys.executable, "-c", snippet("docs/super-resolution.md", "upsample", "python")], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines] == ["dsen2", "bilinear", "bicubic", "adapted"]
    assert all("(8, 120, 120)" in line for line in lines)
    assert lines[-1].endswith(" 20")  # the 2x network took its 20 steps on the scene


@pytest.mark.slow
def test_readme_sr_eval_runs_on_what_it_makes(tmp_path):
    """The README's sr-eval lines, from a fresh folder: every scene reported (none seen by the
    shipped weights), DSen2 ahead of bicubic."""
    bindir = Path(sys.executable).parent
    code = snippet("README.md", "sr", "bash").replace(".venv/bin/", f"{bindir}/")
    r = subprocess.run(["bash", "-euo", "pipefail", "-c", code], cwd=tmp_path, capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    report = json.loads((tmp_path / "sr_eval" / "sr_eval.json").read_text())
    assert not report["report"]["excluded"] and len(report["report"]["scenes"]) == 6
    assert re.search(r"\| dsen2 \|.*\| 0 of 6 \|", r.stdout)  # DSen2 worse than bicubic on no scene


def test_super_resolution_page_names_the_shipped_models(tmp_path):
    r = subprocess.run([sys.executable, "-c", snippet("docs/super-resolution.md", "models", "python")], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[0] == "paper NetSpec(ratio=2, blocks=6, features=128)"


def test_install_lines_name_their_environment_and_no_registry_release():
    """Every pip line a user reads installs from the clone into a named environment (the clone's
    .venv, or "the environment that runs this"), never `bigearth-sr[...]` from a registry, where
    the package is not (issue 35, part 6)."""
    import re
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "dataset_builder" / "bigearth_sr" / "README.md",
             ROOT / "bigearth_torchgeo" / "__init__.py"]
    seen = 0
    for f in files:
        for line in f.read_text().splitlines():
            for m in re.finditer(r"(\S*)\s*(?:-m )?pip install", line):
                seen += 1
                assert "bigearth-sr[" not in line, f"{f.name}: {line.strip()}"
                assert m.group(1).endswith((".venv/bin/python", "python")), f"{f.name}: a bare pip: {line.strip()}"
    assert seen >= 8
