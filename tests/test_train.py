"""reference_train/train.py: 1 vs N processes (DDP and Horovod), kill and resume, a non-finite
loss, a failing worker, shared validation, and a small run that learns."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from .conftest import ROOT
from .test_metrics import independent_prf

BIN = Path(sys.executable).parent
TINY = ["--arch", "resnet18", "--layers", "1,1,1,1", "--workers", "0", "--print-freq", "0"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _dist_step(engine: str, n: int, out: Path, global_bn: bool) -> dict:
    script = str(ROOT / "tests" / "dist_step.py")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PATH": f"{BIN}:{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}
    if engine == "none":
        cmd = [sys.executable, script, "none", str(out), "0"]
    elif engine == "ddp":
        cmd = [str(BIN / "torchrun"), "--nnodes", "1", "--nproc_per_node", str(n), "--master_port", str(_free_port()),
               script, "ddp", str(out), str(int(global_bn))]
    else:
        cmd = [str(BIN / "horovodrun"), "-np", str(n), "-H", f"localhost:{n}", "--gloo", sys.executable, script,
               "horovod", str(out), str(int(global_bn))]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return torch.load(out)


def _horovod():
    return pytest.importorskip("horovod.torch", reason="Horovod is built by scripts/build_horovod.sh (the test command runs it)")


@pytest.mark.parametrize("engine", ["ddp", "horovod"])
def test_two_processes_with_half_batches_take_the_one_process_step(engine, tmp_path):
    if engine == "horovod":
        _horovod()
    ref = _dist_step("none", 1, tmp_path / "one.pt", False)
    two = _dist_step(engine, 2, tmp_path / "two.pt", True)
    assert ref.keys() == two.keys()
    # fp32 sums in another order (two half-batch gradients all-reduced vs one full batch): up to
    # 8e-6 after three steps on some CPUs' oneDNN kernels, while rank-local BatchNorm moves
    # weights by ~0.1, so 5e-5 still tells the two apart by three orders of magnitude
    for k in ref:
        torch.testing.assert_close(two[k], ref[k], rtol=1e-4, atol=5e-5, msg=k)
    # the test can fail: rank-local BatchNorm (the paper's default) does not take the same step
    local = _dist_step(engine, 2, tmp_path / "local.pt", False)
    assert any(not torch.allclose(local[k].float(), ref[k].float(), rtol=1e-4, atol=5e-5) for k in ref)


# --------------------------------------------------------------------------- runs of the script

@pytest.fixture(scope="module")
def learn_data(tmp_path_factory):
    """Four 12 km synthetic products (three training tiles, one test tile: 265 and 88 patches), built and sharded."""
    import shards
    from dataset_builder.build import ARCHIVE_NAME, BuildConfig, build
    from dataset_builder.synth import SynthConfig, write_product
    root = tmp_path_factory.mktemp("learn")
    for tile, date in (("T33UUP", "20170613T101031"), ("T35VPK", "20180204T094159"), ("T34VFJ", "20170823T094031"),
                       ("T34UCF", "20180412T094031")):
        write_product(SynthConfig(tile=tile, date=date, tile_size_m=12_000, seed=11, cloud_cover=0.02, snow_cover=0.0),
                      root / "products")
    cfg = BuildConfig(out_dir=str(root / "dataset"), clc=[str(p) for p in (root / "products").glob("CLC_*.tif")],
                      progress=False)
    build(sorted((root / "products").glob("*.SAFE")), cfg, workers=2)
    index = shards.write_shards(root / "dataset" / ARCHIVE_NAME, root / "shards", "8MB", progress=False)
    assert {"train", "test"} <= set(index["splits"])
    return root / "shards", index


def _train(data, out, *extra, check=True, **popen):
    cmd = [sys.executable, "-m", "reference_train.train", "--data", str(data), "--output-dir", str(out), *TINY, *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    if popen:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, cwd=ROOT)
    if check:
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


def test_kill_mid_epoch_then_resume_ends_where_an_uninterrupted_run_ends(learn_data, tmp_path):
    data, _ = learn_data
    args = ["--epochs", "3", "--batch-size", "8", "--steps-per-epoch", "6", "--val-split", "", "--warmup-epochs", "1"]
    _train(data, tmp_path / "whole", *args)
    whole = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=True)
    out = tmp_path / "killed"
    p = _train(data, out, *args, "--print-freq", "1", popen=True)
    seen_epoch1 = False
    for line in p.stdout:  # kill -9 during epoch 1, after epoch 0's checkpoint is written
        seen_epoch1 |= line.startswith("epoch 1 step 3/")
        if seen_epoch1:
            os.kill(p.pid, signal.SIGKILL)
            break
    p.wait(timeout=60)
    assert seen_epoch1 and p.returncode == -signal.SIGKILL
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 1
    r = _train(data, out, *args, "--resume")
    assert "resumed from" in r.stdout
    resumed = torch.load(out / "checkpoint.pt", weights_only=True)
    assert resumed["epoch"] == whole["epoch"] == 3
    for k in whole["model"]:
        assert torch.equal(resumed["model"][k], whole["model"][k]), k
    assert [h["train_loss"] for h in resumed["history"]] == [h["train_loss"] for h in whole["history"]]
    rows = (out / "metrics.csv").read_text().splitlines()
    assert len(rows) == 4 and (out / "curves.png").exists() and any((out / "tensorboard").iterdir())


def test_sigterm_mid_epoch_writes_the_step_and_the_resumed_run_ends_as_an_uninterrupted_one(learn_data, tmp_path):
    """A cluster's stop (SIGTERM to the process group: the trainer and its loader workers) during an
    epoch: the step in flight finishes, its checkpoint is written with the epoch's position, one
    line and exit 143; the rerun with --resume goes on from that step and ends with the weights of a
    run never stopped (the same batches in the same order, the same augmentation and dropout)."""
    data, _ = learn_data
    args = ["--epochs", "2", "--batch-size", "8", "--steps-per-epoch", "6", "--val-split", "", "--warmup-epochs", "1",
            "--workers", "2", "--dropout", "0.3"]
    _train(data, tmp_path / "whole", *args)
    whole = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=True)
    out = tmp_path / "stopped"
    p = subprocess.Popen([sys.executable, "-m", "reference_train.train", "--data", str(data), "--output-dir", str(out),
                          *TINY, *args, "--print-freq", "1"], env={**os.environ, "OMP_NUM_THREADS": "2"},
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, start_new_session=True)
    for line in p.stdout:
        if line.startswith("epoch 0 step 2/"):
            os.killpg(p.pid, signal.SIGTERM)
            break
    rest, err = p.communicate(timeout=120)
    assert p.returncode == 143, err[-3000:]
    assert "Traceback" not in err and err.strip().splitlines()[-1] == (
        "stopped by SIGTERM; rerun the same command to resume (the checkpoint of the last finished step is kept; "
        "add --resume)")
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    step = ck["data_position"]["step"]
    assert ck["epoch"] == 0 and ck["history"] == [] and 2 <= step < 6, ck["data_position"]
    assert f"checkpoint written at epoch 0 step {step}/6" in err
    assert not [q for q in out.rglob("*") if q.name.endswith(".tmp") or q.name == ".lock"]
    r = _train(data, out, *args, "--resume")
    assert f"resumed from {out / 'checkpoint.pt'}: epoch 0, step {step}" in r.stdout
    resumed = torch.load(out / "checkpoint.pt", weights_only=True)
    assert resumed["epoch"] == 2 and resumed["data_position"]["step"] == 0
    for k in whole["model"]:
        assert torch.equal(resumed["model"][k], whole["model"][k]), k
    first = resumed["history"][0]
    assert first["resumed_at_step"] == step and first["steps"] == 6 - step
    assert resumed["history"][1]["train_loss"] == whole["history"][1]["train_loss"]


def test_a_rerun_never_trains_over_a_run_unasked(learn_data, tmp_path):
    """Issue 35: into a folder holding a checkpoint, train refuses without --resume or --overwrite,
    naming the checkpoint and its epoch; --resume into a folder without one refuses, and
    --resume-if-present says it starts fresh; --overwrite moves the old run aside and gives it back
    when the new run ends before its first checkpoint (here a diverged loss), else removes it."""
    data, _ = learn_data
    args = ["--batch-size", "8", "--steps-per-epoch", "2", "--val-split", "", "--warmup-epochs", "0"]
    out = tmp_path / "run"
    r = _train(data, out, "--epochs", "1", "--resume-if-present", *args)
    assert f"note: no checkpoint in {out}: a new run starts (--resume-if-present)" in r.stdout
    ckpt = out / "checkpoint.pt"
    old = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert {"checkpoint.pt", "metrics.csv", "args.json"} <= set(old)

    r = _train(data, out, "--epochs", "2", *args, check=False)
    err = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(err) == 1, r.stderr[-2000:]
    assert err[0] == (f"error: {ckpt} holds a run (epoch 1 of 1): add --resume to go on with it, or --overwrite to "
                      f"start a new one (the old run is kept aside until the new run's first checkpoint)")
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == old

    r = _train(data, tmp_path / "runn", "--epochs", "2", "--resume", *args, check=False)  # a mistyped folder
    assert r.returncode == 1 and r.stderr.strip().startswith(f"error: --resume: {tmp_path / 'runn'} holds no checkpoint")
    assert not (tmp_path / "runn" / "checkpoint.pt").exists()

    r = _train(data, out, "--epochs", "2", "--overwrite", "--lr", "1e12", "--mixup-alpha", "0", "--nan-check-every",
               "1", *args, check=False)
    assert r.returncode == 3 and "is moved to" in r.stdout and "is back in" in r.stderr, r.stdout[-2000:] + r.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == old  # every byte of the old run
    assert not (out / ".replaced").exists()

    r = _train(data, out, "--epochs", "2", "--overwrite", "--seed", "5", *args)
    assert f"note: --overwrite: the run in {out} (epoch 1 of 1) is moved to {out / '.replaced'}" in r.stdout
    new = torch.load(ckpt, weights_only=True)
    assert new["epoch"] == 2 and new["args"]["seed"] == 5 and len(new["history"]) == 2
    assert not (out / ".replaced").exists() and ckpt.read_bytes() != old["checkpoint.pt"]
    r = _train(data, out, "--epochs", "2", "--resume", "--seed", "5", *args)
    assert "resumed from" in r.stdout and "nothing left to train" in r.stderr


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(learn_data, tmp_path):
    data, _ = learn_data
    args = ["--batch-size", "8", "--steps-per-epoch", "4", "--val-split", "", "--nan-check-every", "1", "--warmup-epochs", "0"]
    _train(data, tmp_path, "--epochs", "1", *args)
    good = (tmp_path / "checkpoint.pt").read_bytes()
    r = _train(data, tmp_path, "--epochs", "3", "--resume", "--lr", "1e12", "--mixup-alpha", "0", *args, check=False)
    assert r.returncode == 3, r.stdout[-2000:] + r.stderr[-2000:]
    assert "loss became" in r.stderr and "last good checkpoint is kept" in r.stderr
    assert (tmp_path / "checkpoint.pt").read_bytes() == good


@pytest.mark.parametrize("engine", ["ddp", "horovod"])
def test_a_failing_worker_ends_the_job(learn_data, tmp_path, engine):
    data, _ = learn_data
    if engine == "horovod":
        _horovod()
        launch = [str(BIN / "horovodrun"), "-np", "2", "-H", "localhost:2", "--gloo", sys.executable]
    else:
        launch = [str(BIN / "torchrun"), "--nnodes", "1", "--nproc_per_node", "2", "--master_port", str(_free_port())]
    cmd = [*launch, str(ROOT / "tests" / "fail_at.py"), "1:2", "--engine", engine, "--data", str(data),
           "--output-dir", str(tmp_path), *TINY, "--epochs", "2", "--batch-size", "4", "--steps-per-epoch", "6",
           "--val-split", "", "--timeout", "60"]
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}
    t = time.perf_counter()
    r = subprocess.run(cmd if engine == "horovod" else [cmd[0], *cmd[1:]], env=env, capture_output=True, text=True,
                       timeout=300, cwd=ROOT)
    assert r.returncode != 0 and time.perf_counter() - t < 240
    assert "failing at step 2" in r.stdout + r.stderr


def test_distributed_training_runs_with_both_engines(learn_data, tmp_path):
    data, _ = learn_data
    # no OMP_NUM_THREADS and no --workers: each rank sizes itself to its share of the node
    env = {**{k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}, "PATH": f"{BIN}:{os.environ['PATH']}"}
    tiny = [a for i, a in enumerate(TINY) if "--workers" not in TINY[max(0, i - 1):i + 1]]
    common = ["-m", "reference_train.train", "--data", str(data), *tiny, "--epochs", "1", "--batch-size", "4",
              "--steps-per-epoch", "3", "--global-bn"]
    cores = len(os.sched_getaffinity(0))
    runs = {"ddp": [str(BIN / "torchrun"), "--nnodes", "1", "--nproc_per_node", "2", "--master_port", str(_free_port())]}
    try:
        runs["horovod"] = [str(BIN / "horovodrun"), "-np", "2", "-H", "localhost:2", "--gloo", sys.executable]
    except ImportError:
        pass
    for engine, launch in runs.items():
        extra = ["--fp16-allreduce"] if engine == "horovod" else []  # Horovod's gradient compression
        r = subprocess.run([*launch, *common, *extra, "--engine", engine, "--output-dir", str(tmp_path / engine)], env=env,
                           capture_output=True, text=True, timeout=300, cwd=ROOT)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
        assert "FutureWarning" not in r.stderr, r.stderr[-3000:]  # a standard run warns of nothing deprecated
        assert "2 rank(s)" in r.stdout and "global batch 8 (2 x 4)" in r.stdout and "lr 0.003125" in r.stdout
        m = re.search(r"(\d+) rank\(s\) on this node of (\d+) usable cores: (\d+) threads and (\d+) loader workers",
                      r.stdout)
        assert m, r.stdout[-2000:]
        local, seen, threads, workers = map(int, m.groups())
        assert (local, seen) == (2, cores) and 2 * threads <= max(cores, 2) and workers <= threads // 2  # no oversubscription
        hist = json.loads(json.dumps(torch.load(tmp_path / engine / "checkpoint.pt", weights_only=True)["history"]))
        assert hist[0]["steps"] == 3 and np.isfinite(hist[0]["train_loss"])
        # the script applies the schedule per step: its last step (2 of 3) is 2/3 into the warm-up's first epoch
        peak = 0.1 * 2 * 4 / 256
        assert hist[0]["lr"] == pytest.approx(peak / 2 + (peak - peak / 2) * (2 / 3) / 5)


# --------------------------------------------------------------------------- evaluation

def test_a_small_run_learns_and_evaluate_writes_its_tables(learn_data, tmp_path):
    data, index = learn_data
    _train(data, tmp_path / "run", "--epochs", "12", "--batch-size", "32", "--lr", "0.1", "--warmup-epochs", "1",
           "--milestones", "10", "--mixup-alpha", "0", "--dropout", "0.2", "--val-split", "test")
    ev = tmp_path / "eval"
    r = subprocess.run([sys.executable, "-m", "reference_train.evaluate", "--checkpoint", str(tmp_path / "run" / "checkpoint.pt"),
                        "--data", str(data), "--split", "test", "--out", str(ev), "--workers", "0"],
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    rep = json.loads((ev / "report.json").read_text())
    model_f1 = rep["43"]["averages"]["micro"]["f1"]
    # baseline: predict every class that is present in more than half of the training patches
    import shards
    train_y = np.stack([y.numpy() for _, y in shards.load(data, "train", shuffle=0, normalize=False)])
    test_y = np.stack([y.numpy() for _, y in shards.load(data, "test", shuffle=0, normalize=False)]).astype(np.int64)
    base = np.broadcast_to(train_y.mean(0) > 0.5, test_y.shape).astype(np.int64)
    tp, fp, fn, *_ = independent_prf(test_y, base)
    base_f1 = 2 * tp.sum() / max(2 * tp.sum() + fp.sum() + fn.sum(), 1)
    assert model_f1 > base_f1 + 0.08, (model_f1, base_f1)  # measured: 0.58 against 0.43
    assert rep["checkpoint"]["epoch"] == 12 and rep["43"]["samples"] == index["splits"]["test"]["samples"]
    shutil.rmtree(tmp_path / "run" / "tensorboard", ignore_errors=True)


@pytest.mark.parametrize("extra", [["--variant", "native", "--labels", "19"],
                                   ["--variant", "rgb", "--amp", "bf16", "--channels-last"],
                                   ["--synthetic-data", "--mixup-alpha", "0.4"]])
def test_variants_precision_and_synthetic_input_train(learn_data, tmp_path, extra):
    data, _ = learn_data
    _train(data, tmp_path, "--epochs", "1", "--batch-size", "8", "--steps-per-epoch", "3", "--val-split", "test", *extra)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    row = state["history"][0]
    assert row["steps"] == 3 and np.isfinite(row["train_loss"])
    n_out = 19 if "19" in extra else 43
    assert state["model"]["fc.1.weight"].shape[0] == n_out
    if "native" in extra:
        assert "conv1.c60.weight" in state["model"]
    elif "rgb" in extra:
        assert state["model"]["conv1.weight"].shape[1] == 3
    if "--synthetic-data" not in extra:
        assert 0 <= row["val_micro_f1"] <= 1


def test_the_trainer_imports_no_tensorflow_and_sizes_itself_to_its_share_of_the_node(tmp_path):
    code = ("import os, sys, torch\n"
            "from reference_train.train import get_args_parser, size_to_node, summary_writer\n"
            f"w = summary_writer({str(tmp_path)!r}); w.add_scalar('loss', 1.0, 0); w.close()\n"
            "args = get_args_parser().parse_args(['--data', 'x', '--output-dir', 'y'])\n"
            "local, cores = size_to_node(args)\n"
            "print('chosen', local, cores, args.threads, args.workers, torch.get_num_threads())\n"
            "print('tensorflow imported:', 'tensorflow' in sys.modules)\n")
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "LOCAL_RANK", "LOCAL_WORLD_SIZE")}
    cores = len(os.sched_getaffinity(0))
    for env, local in (({}, 1), ({"LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "2"}, 2),
                       ({"HOROVOD_LOCAL_RANK": "1", "HOROVOD_LOCAL_SIZE": "3"}, 3), ({"OMP_NUM_THREADS": "1"}, 1)):
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT,
                           env={**base, **env})
        assert r.returncode == 0, r.stderr[-2000:]
        assert "tensorflow imported: False" in r.stdout
        assert "oneDNN" not in r.stderr and list(tmp_path.glob("events.out.tfevents.*"))
        got_local, got_cores, threads, workers, torch_threads = map(int, r.stdout.split("chosen ")[1].split()[:5])
        assert (got_local, got_cores) == (local, cores) and torch_threads == threads >= 1
        if "OMP_NUM_THREADS" in env:
            assert threads == 1  # the user's setting wins
        else:  # the ranks of a node together run at most its cores in compute threads, and use them all
            assert threads == max(1, cores // local) and workers <= max(1, cores // local) // 2, (local, cores, threads, workers)


def test_validation_is_shared_by_the_ranks_and_equals_one_process(learn_data, tmp_path):
    """Three ranks each score a third of the test split (88 patches: two padded repeats), the
    predictions are gathered and the repeats dropped: the metrics equal a one-process run."""
    data, index = learn_data
    assert index["splits"]["test"]["samples"] % 3
    script = str(ROOT / "tests" / "dist_validate.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, script, "none", str(data), str(tmp_path / "one.json")], env=env,
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert one.returncode == 0, one.stderr[-3000:]
    three = subprocess.run([str(BIN / "torchrun"), "--nnodes", "1", "--nproc_per_node", "3", "--master_port",
                            str(_free_port()), script, "ddp", str(data), str(tmp_path / "three.json")], env=env,
                           capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert three.returncode == 0, three.stdout[-2000:] + three.stderr[-3000:]
    a, b = (json.loads((tmp_path / f).read_text()) for f in ("one.json", "three.json"))
    assert a.keys() == b.keys() and "val_micro_f1" in a
    for k in a:
        assert b[k] == pytest.approx(a[k], rel=1e-5, abs=1e-6), k


def test_a_short_run_without_milestones_gets_a_schedule_that_decays(learn_data, tmp_path):
    """--epochs below the paper's first milestone: the rate decays at the same fractions of the run,
    and the start says so (issue 35, part 4)."""
    data, _ = learn_data
    r = _train(data, tmp_path, "--epochs", "3", "--batch-size", "8", "--steps-per-epoch", "2", "--val-split", "",
               "--warmup-epochs", "0", "--mixup-alpha", "0")
    assert "the rate decays at epochs 1,2 instead" in r.stdout, r.stdout[-2000:]
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    lrs = [float(row.split(",")[header.index("lr")]) for row in rows[1:]]
    assert lrs[1] < lrs[0] and lrs[2] < lrs[1]
