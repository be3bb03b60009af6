"""bigearth/stopping.py and bigearth.files.clear_dead_temporaries: SIGTERM and SIGHUP end every
command as Ctrl-C does (one line, 143 or 129, nothing left), and every rerun clears what dead runs
left. The build and the trainer are stopped in tests/test_build.py and tests/test_train.py, the MPI
ranks in tests/test_mpi.py."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bigearth import stopping
from bigearth.files import clear_dead_temporaries, temporary_name

from .conftest import ROOT

HOST = socket.gethostname()


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_only_this_hosts_dead_runs_temporaries_are_cleared(tmp_path, capsys):
    dead = _dead_pid()
    live = subprocess.Popen(["sleep", "30"])
    try:
        (tmp_path / "parts" / "deep").mkdir(parents=True)
        gone = [tmp_path / temporary_name("a.h5", dead), tmp_path / "parts" / temporary_name("b.h5", dead),
                tmp_path / "parts" / f".c.h5.{dead}.tmp"]  # the pid-only name written before hosts were named
        kept = [tmp_path / temporary_name("d.h5", live.pid), tmp_path / temporary_name("e.h5"),  # live, this process
                tmp_path / f".f.h5.{dead}@another-host.tmp",  # its process cannot be seen from here
                tmp_path / "parts" / "deep" / "x" / temporary_name("g.h5", dead),  # below the depth asked
                tmp_path / "h.tmp", tmp_path / "parts" / "i.h5"]  # not a temporary of this package's naming
        for p in gone + kept:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(b"x")
        folder = tmp_path / "parts" / temporary_name("j", dead)  # a temporary folder (an archive's staging)
        (folder / "sub").mkdir(parents=True)
        gone.append(folder)
        removed = clear_dead_temporaries(tmp_path, depth=2)
        assert sorted(removed) == sorted(gone)
        assert not any(p.exists() for p in gone) and all(p.exists() for p in kept)
        err = capsys.readouterr().err
        assert f"removed {len(gone)} temporaries of run(s) that died" in err
        assert "1 temporary of another host's run(s) kept" in err and ".f.h5." in err
    finally:
        live.kill()
        live.wait()


def test_a_deferred_signal_waits_for_the_caller_and_a_second_one_stops_at_once():
    before = signal.getsignal(signal.SIGTERM)
    with stopping.deferred():
        assert stopping.pending() is None
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)  # the handler runs between bytecodes of this thread
        assert stopping.pending() == signal.SIGTERM
        with pytest.raises(stopping.Stopped) as e:
            os.kill(os.getpid(), signal.SIGHUP)
            time.sleep(0.05)
        assert (e.value.signum, e.value.exit_code, e.value.name) == (signal.SIGHUP, 129, "SIGHUP")
        assert isinstance(e.value, KeyboardInterrupt)  # every Ctrl-C path (workers ended, locks released) runs
    assert stopping.pending() is None and signal.getsignal(signal.SIGTERM) is before


SLEEPER = """
import sys, time
from pathlib import Path
from bigearth.errors import run_command
from bigearth.files import atomic_path, folder_lock

def slow(out):
    with folder_lock(out), atomic_path(Path(out) / "result") as tmp:
        Path(tmp).write_text("half")
        Path(out, "ready").write_text("")
        time.sleep(60)
        Path(tmp).write_text("whole")
    return 0

sys.exit(run_command(slow, sys.argv[1], kept="what is kept"))
"""


@pytest.mark.parametrize("how,code", [("SIGTERM", 143), ("SIGHUP", 129), ("SIGINT", 130)])
def test_a_command_stopped_by_a_signal_says_one_line_and_leaves_nothing(tmp_path, how, code):
    p = subprocess.Popen([sys.executable, "-c", SLEEPER, str(tmp_path)], cwd=ROOT, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 60
    while not (tmp_path / "ready").exists() and time.time() < deadline:
        time.sleep(0.02)
    p.send_signal(getattr(signal, how))
    err = p.communicate(timeout=60)[1]
    said = "interrupted" if how == "SIGINT" else f"stopped by {how}"
    assert p.returncode == code and err.strip().splitlines() == [f"{said}; rerun the same command to resume "
                                                                 f"(what is kept)"], err
    assert sorted(q.name for q in tmp_path.iterdir()) == ["ready"]  # no lock, no temporary, no result


def test_nohup_keeps_a_hangup_ignored(tmp_path):
    """A signal its parent made the process ignore (nohup's SIGHUP) stays ignored: the command ends."""
    script = SLEEPER.replace("time.sleep(60)", "time.sleep(1.5)")
    p = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], cwd=ROOT, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    deadline = time.time() + 60
    while not (tmp_path / "ready").exists() and time.time() < deadline:
        time.sleep(0.02)
    p.send_signal(signal.SIGHUP)
    err = p.communicate(timeout=60)[1]
    assert p.returncode == 0, err
    assert (tmp_path / "result").read_text() == "whole"


# ---------------------------------------------------------------- each command, stopped and rerun

def _stop(tmp_path, point: str, kind: str, argv: list[str], out: Path, env=None, sig=signal.SIGTERM) -> str:
    """Run the command until ``point`` (module:function:call), send ``sig`` to its process group
    (SIGTERM: as SLURM's scancel and a time limit do; SIGINT: Ctrl-C in a terminal), and check the
    line, 128 + the signal and that no lock or temporary is left in ``out``; then plant a dead
    run's temporary there for the rerun to clear. Returns the last line."""
    ready = tmp_path / "ready"
    ready.unlink(missing_ok=True)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "OMP_NUM_THREADS": "2", **(env or {})}
    p = subprocess.Popen([sys.executable, str(ROOT / "tests" / "stop_at.py"), point, str(ready), kind, *argv],
                         cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    deadline = time.time() + 300
    while not ready.exists() and p.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert ready.exists(), p.communicate()[1][-3000:]
    os.killpg(p.pid, sig)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 128 + sig, err[-3000:]
    last = err.strip().splitlines()[-1]
    said = "interrupted" if sig == signal.SIGINT else f"stopped by {signal.Signals(sig).name}"
    assert "Traceback" not in err and last.startswith(f"{said}; rerun the same command to resume"), err[-3000:]
    assert not [q for q in out.rglob("*") if q.name.endswith(".tmp") or q.name == ".lock"]
    (out / temporary_name("left-by-a-killed-run", _dead_pid())).write_bytes(b"x")
    return last


def _rerun(cmd: list[str], cwd: Path, out: Path) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600,
                       env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "OMP_NUM_THREADS": "2"})
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert "temporary of run(s) that died" in r.stderr
    assert not [q for q in out.rglob("*") if q.name.endswith(".tmp") or q.name == ".lock"]
    return r


CLI = [sys.executable, "-m", "bigearth_cli.cli"]


def test_shards_stopped_then_rerun_write_what_an_uninterrupted_run_writes(built, tmp_path):
    archive = built[0] / "bigearth_sr.h5"
    args = ["shards", str(archive), "--shard-size", "2MB", "--shard-workers", "1", "--no-progress"]
    whole = tmp_path / "whole"
    subprocess.run([*CLI, *args, "--out", str(whole)], cwd=ROOT, check=True, capture_output=True)
    out = tmp_path / "stopped"
    last = _stop(tmp_path, "shards.writer:_write_task:2", "cli", [*args, "--out", str(out)], out)
    assert last.endswith("(finished shards are kept and not written again)")
    _rerun([*CLI, *args, "--out", str(out)], ROOT, out)
    a, b = (json.loads((d / "index.json").read_text())["splits"] for d in (whole, out))
    assert {s: [e["sha256"] for e in d["shards"]] for s, d in a.items()} == \
        {s: [e["sha256"] for e in d["shards"]] for s, d in b.items()}


def test_evaluate_stopped_then_rerun(built, tmp_path):
    import argparse

    import torch

    import shards
    from reference_train.checkpoint import save_checkpoint
    from reference_train.model import build_model, parse_layers

    sdir = tmp_path / "shards"
    index = shards.write_shards(built[0] / "bigearth_sr.h5", sdir, "4MB", progress=False)
    split = next(iter(index["splits"]))
    args = argparse.Namespace(variant="super", labels=43, arch="resnet18", layers="1,1,1,1", dropout=0.0, seed=0)
    model = build_model("super", 43, "resnet18", 0.0, parse_layers("1,1,1,1"))
    save_checkpoint(tmp_path / "checkpoint.pt", model, torch.optim.SGD(model.parameters(), lr=0.1), None, 1, [], args)
    out = tmp_path / "eval"
    argv = ["evaluate", "--checkpoint", str(tmp_path / "checkpoint.pt"), "--data", str(sdir), "--split", split,
            "--out", str(out), "--workers", "0", "--device", "cpu"]
    _stop(tmp_path, "reference_train.evaluate:write_reports:1", "cli", argv, out)
    assert not (out / "report.json").exists()
    _rerun([*CLI, *argv], ROOT, out)
    assert json.loads((out / "report.json").read_text())["checkpoint"]["split"] == split


def test_sr_train_stopped_then_resumed(products, tmp_path):
    out = tmp_path / "sr"
    argv = ["sr-train", *map(str, products[:1]), "--out", str(out), "--blocks", "1", "--features", "8",
            "--steps-per-epoch", "2", "--batch2", "8", "--batch6", "4", "--crop6", "24", "--no-progress", "--nets", "2",
            "--epochs2", "3"]
    last = _stop(tmp_path, "sr_lab.train:validate:2", "cli", argv, out)
    assert last.endswith("(the last epoch's checkpoint is kept; add --resume)")
    assert (out / "checkpoint_2x.pt").exists() and not (out / "dsen2.npz").exists()
    r = _rerun([*CLI, *argv, "--resume"], ROOT, out)
    assert "2x: resumed after epoch" in r.stdout + r.stderr
    import torch
    assert len(torch.load(out / "checkpoint_2x.pt", weights_only=True)["history"]) == 3  # one network: no bundle


def test_sr_eval_stopped_then_rerun(products, tmp_path):
    out = tmp_path / "ev"
    argv = ["sr-eval", str(products[0]), "--methods", "bilinear,bicubic", "--no-figures", "--out", str(out)]
    _stop(tmp_path, "sr_lab.evaluate:evaluate_piece:1", "cli", argv, out)
    _rerun([*CLI, *argv], ROOT, out)
    assert (out / "sr_eval.json").exists()


def test_tfds_build_interrupted_while_it_writes_examples(synth_dir, tmp_path):
    """Issue 34: Ctrl-C once the archive is made, while TFDS writes the examples, is the same one
    line and exit 130 (TFDS removes its incomplete folder); the archive is kept for the rerun."""
    pytest.importorskip("tensorflow_datasets")
    data_dir = tmp_path / "data"
    argv = ["build", "bigearth_sr/super_bilinear", "--imports", "dataset_builder.bigearth_sr",
            f"--manual_dir={synth_dir}", f"--data_dir={data_dir}"]
    env = {"BIGEARTH_SR_WORKERS": "1", "PYTHONPATH": str(ROOT)}
    last = _stop(tmp_path, "dataset_builder.bigearth_sr.bigearth_sr_dataset_builder:examples:1", "tfds", argv,
                 data_dir, env, sig=signal.SIGINT)
    assert last.endswith("(the archive's finished tiles are kept in the data dir's downloads/ and not built again)")
    assert not list(data_dir.rglob("*incomplete*")) and list(data_dir.rglob("bigearth_sr.h5"))


def test_tfds_build_stopped_then_rerun(synth_dir, tmp_path):
    pytest.importorskip("tensorflow_datasets")
    data_dir = tmp_path / "data"
    argv = ["build", "bigearth_sr/super_bilinear", "--imports", "dataset_builder.bigearth_sr",
            f"--manual_dir={synth_dir}", f"--data_dir={data_dir}"]
    env = {"BIGEARTH_SR_WORKERS": "1", "PYTHONPATH": str(ROOT)}
    from dataset_builder.inputs import method_folder
    work = data_dir / "downloads" / "bigearth_sr_build" / method_folder("bilinear", "default")  # under its lock
    last = _stop(tmp_path, "dataset_builder.engines:run_task:2", "tfds", argv, work, env)
    assert last.endswith("(the archive's finished tiles are kept in the data dir's downloads/ and not built again)")
    assert not list(data_dir.rglob("*incomplete*"))  # TFDS's own staging, removed on the way out
    exe = Path(sys.executable).with_name("tfds")
    r = subprocess.run([str(exe), *argv], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                       env={**os.environ, **env, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert r.returncode == 0, r.stderr[-3000:]
    assert "temporary of run(s) that died" in r.stderr
    assert not [q for q in data_dir.rglob("*") if q.name.endswith(".tmp") or q.name == ".lock"]
    assert list((data_dir / "bigearth_sr" / "super_bilinear").rglob("dataset_info.json"))
