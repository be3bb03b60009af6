"""bigearth/runs.py: what a rerun does to the run already in its output folder."""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import os

import pytest

from bigearth import runs
from bigearth.errors import OptionError


def tree(folder):
    """Every file under ``folder`` (the lock and the set-aside folders left out) with its digest."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*"))
            if p.is_file() and not {runs.LOCK, runs.ASIDE, runs.MOVING} & set(p.relative_to(folder).parts)}


def old_run(folder):
    (folder / "tensorboard").mkdir(parents=True)
    (folder / "checkpoint.pt").write_bytes(b"old weights")
    (folder / "metrics.csv").write_text("epoch,loss\n1,0.5\n")
    (folder / "args.json").write_text('{"epochs": 3}')
    (folder / "tensorboard" / "events").write_bytes(b"\x00old")
    (folder / runs.LOCK).write_text("pid 1")
    return folder / "checkpoint.pt", tree(folder)


def take(folder, *, resume=False, if_present=False, overwrite=False, writer=True):
    return runs.take_over(folder, [folder / "checkpoint.pt"], lambda p: f"epoch 3 of {p.name}", resume=resume,
                          if_present=if_present, overwrite=overwrite, writer=writer)


def test_a_folder_holding_a_run_is_refused_without_a_flag(tmp_path):
    ckpt, before = old_run(tmp_path)
    with pytest.raises(OptionError) as e:
        take(tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{ckpt} holds a run (epoch 3 of checkpoint.pt)")
    assert "--resume" in msg and "--overwrite" in msg
    assert tree(tmp_path) == before


def test_resume_without_a_checkpoint_is_refused_and_resume_if_present_says_it_starts_fresh(tmp_path, capsys):
    with pytest.raises(OptionError) as e:
        take(tmp_path / "typo", resume=True)
    assert str(e.value).startswith(f"--resume: {tmp_path / 'typo'} holds no checkpoint (checkpoint.pt)")
    assert "--resume-if-present" in str(e.value)
    resume, _ = take(tmp_path, if_present=True)
    assert resume is False and "a new run starts (--resume-if-present)" in capsys.readouterr().out
    old_run(tmp_path)
    assert take(tmp_path, if_present=True)[0] is True and take(tmp_path, resume=True)[0] is True
    assert not capsys.readouterr().out  # resuming says nothing here; the trainer says where it resumed


def test_overwrite_keeps_the_old_run_aside_until_the_new_runs_first_checkpoint(tmp_path):
    ckpt, before = old_run(tmp_path)
    resume, takeover = take(tmp_path, overwrite=True)
    assert resume is False
    with takeover:
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([runs.LOCK, runs.ASIDE])  # the lock stays held
        assert tree(tmp_path / runs.ASIDE) == before  # moved, not copied or deleted
        (tmp_path / "args.json").write_text('{"epochs": 1}')
        ckpt.write_bytes(b"new weights")
        takeover.release()
    assert not (tmp_path / runs.ASIDE).exists() and ckpt.read_bytes() == b"new weights"
    assert set(tree(tmp_path)) == {"args.json", "checkpoint.pt"}


@pytest.mark.parametrize("ending", ["error", "return"])
def test_a_new_run_that_ends_before_its_first_checkpoint_gives_the_old_run_back(tmp_path, ending, capsys):
    _, before = old_run(tmp_path)
    _, takeover = take(tmp_path, overwrite=True)
    with pytest.raises(RuntimeError) if ending == "error" else contextlib.nullcontext():
        with takeover:
            (tmp_path / "args.json").write_text('{"epochs": 1}')  # the new run's, under an old name
            (tmp_path / "new.log").write_text("started")
            if ending == "error":
                raise RuntimeError("diverged")
    assert tree(tmp_path) == {**before, "new.log": tree(tmp_path)["new.log"]}
    assert not (tmp_path / runs.ASIDE).exists()
    assert "the run it was to replace is back" in capsys.readouterr().err


def test_an_overwrite_cut_short_is_settled_by_the_next_run(tmp_path, capsys):
    ckpt, before = old_run(tmp_path)
    # killed while moving: part of the run in .replacing, the rest (the checkpoint too) still in place
    moving = tmp_path / runs.MOVING
    moving.mkdir()
    os.rename(tmp_path / "metrics.csv", moving / "metrics.csv")
    os.rename(tmp_path / "tensorboard", moving / "tensorboard")
    assert take(tmp_path, resume=True)[0] is True
    assert tree(tmp_path) == before and not moving.exists()
    # killed after the move, before the new run's first checkpoint: given back
    _, takeover = take(tmp_path, overwrite=True)
    takeover.aside = None  # as if the process had died: nothing ran __exit__
    (tmp_path / "args.json").write_text("{}")
    with pytest.raises(OptionError):  # and then refused as the old run it is
        take(tmp_path)
    assert tree(tmp_path) == before and "never got a checkpoint of its own" in capsys.readouterr().err
    # killed after the new run's first checkpoint, before the old one was removed: removed now
    _, takeover = take(tmp_path, overwrite=True)
    takeover.aside = None
    ckpt.write_bytes(b"new weights")
    assert take(tmp_path, resume=True)[0] is True
    assert not (tmp_path / runs.ASIDE).exists() and tree(tmp_path) == {"checkpoint.pt": tree(tmp_path)["checkpoint.pt"]}


def test_other_ranks_decide_alike_and_move_nothing(tmp_path):
    _, before = old_run(tmp_path)
    with pytest.raises(OptionError):
        take(tmp_path, writer=False)
    resume, takeover = take(tmp_path, overwrite=True, writer=False)
    assert resume is False and takeover.aside is None and tree(tmp_path) == before
    os.rename(tmp_path / "checkpoint.pt", tmp_path / "ckpt")
    (tmp_path / runs.ASIDE).mkdir()
    os.rename(tmp_path / "ckpt", tmp_path / runs.ASIDE / "checkpoint.pt")
    # rank 0 may not have given an interrupted overwrite's run back yet: it will, so the run resumes
    assert take(tmp_path, resume=True, writer=False)[0] is True
    assert (tmp_path / runs.ASIDE / "checkpoint.pt").exists()


def test_the_flags_exclude_each_other():
    p = argparse.ArgumentParser()
    runs.add_flags(p, "checkpoint.pt")
    assert vars(p.parse_args([])) == {"resume": False, "resume_if_present": False, "overwrite": False}
    for a, b in (("--resume", "--overwrite"), ("--resume", "--resume-if-present"), ("--overwrite", "--resume-if-present")):
        with pytest.raises(SystemExit):
            p.parse_args([a, b])
