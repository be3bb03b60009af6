"""The import graph: no cycle, no upward arrow, no private name of another module
(scripts/check_layers.py, run here as the command a maintainer runs)."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import check_layers  # noqa: E402


def test_the_package_import_graph_has_no_cycle_and_points_down():
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_layers.py")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout
    assert "0 problem(s)" in r.stdout


def test_the_checker_sees_cycles_upward_arrows_and_private_names(tmp_path, monkeypatch):
    """The checker itself, on a small tree with one of each fault (hidden in a function too)."""
    for rel, text in {
        "bigearth/__init__.py": "",
        "bigearth/core.py": "def f():\n    from dataset_builder import a  # an upward arrow, hidden in a function\n",
        "dataset_builder/__init__.py": "",
        "dataset_builder/a.py": "from . import b\n",
        "dataset_builder/b.py": "from .a import _private\n",
        "shards/__init__.py": "", "reference_train/__init__.py": "", "bigearth_cli/__init__.py": "",
    }.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    monkeypatch.setattr(check_layers, "ROOT", tmp_path)
    found = check_layers.problems()
    assert any("bigearth/core.py:2: imports dataset_builder.a, a layer above" in p for p in found), found
    assert any("import cycle: dataset_builder.a -> dataset_builder.b" in p for p in found), found
    assert any("private name _private of dataset_builder.a" in p for p in found), found


def test_the_checker_sees_a_module_and_a_sub_package_importing_each_other(tmp_path, monkeypatch):
    """No two modules form a cycle, yet ``up`` imports ``sub.infer`` while ``sub.train`` imports
    ``up``: the package's parts point both ways (what ``upsample`` and ``sr/`` did)."""
    for rel, text in {
        "bigearth/__init__.py": "", "shards/__init__.py": "", "reference_train/__init__.py": "",
        "bigearth_cli/__init__.py": "", "sr_lab/__init__.py": "",
        "dataset_builder/__init__.py": "",
        "dataset_builder/up.py": "def f():\n    from .sub.infer import g\n",
        "dataset_builder/sub/__init__.py": "",
        "dataset_builder/sub/infer.py": "def g():\n    pass\n",
        "dataset_builder/sub/train.py": "from .. import up\n",
    }.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    monkeypatch.setattr(check_layers, "ROOT", tmp_path)
    found = check_layers.problems()
    assert not [p for p in found if p.startswith("import cycle:")], found
    assert any("import cycle between the parts of dataset_builder: dataset_builder.sub <-> dataset_builder.up" in p
               for p in found), found
    (tmp_path / "dataset_builder/sub/train.py").write_text("")  # one way only: no problem
    assert check_layers.problems() == []
