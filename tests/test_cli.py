"""bigearth_cli/cli.py: help that is true (every option's default once, texts that match the code),
parsing that imports neither torch nor TensorFlow, and failures as one full line."""
from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from bigearth.options import HelpFormatter
from bigearth_cli import cli

COMMANDS = ("synth", "build", "demo", "shards", "verify-shards", "info", "sr-train", "sr-eval", "sr-convert", "train",
            "evaluate")


def subparsers() -> dict[str, argparse.ArgumentParser]:
    """The real parser's subcommands (built by cli.main's own code, stopped before parsing)."""
    captured = {}
    real = argparse.ArgumentParser.parse_args

    def grab(self, *a, **k):
        captured["parser"] = self
        raise SystemExit(0)
    argparse.ArgumentParser.parse_args = grab
    try:
        with pytest.raises(SystemExit):
            cli.main([])
    finally:
        argparse.ArgumentParser.parse_args = real
    sub = next(a for a in captured["parser"]._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


@pytest.mark.parametrize("cmd", COMMANDS)
def test_every_option_shows_its_default_once(cmd):
    p = subparsers()[cmd]
    assert p.formatter_class is HelpFormatter
    fmt = p._get_formatter()
    for action in p._actions:
        if not action.option_strings or action.default is argparse.SUPPRESS:
            continue
        text = fmt._expand_help(action) if action.help else fmt._get_help_string(action)
        said = text.lower().count("default:") + text.count("(required)")
        assert said == 1, f"{cmd} {action.option_strings[0]}: {text!r}"
        assert "default: None" not in text, f"{cmd} {action.option_strings[0]}: {text!r}"


def test_help_texts_match_the_code():
    from dataset_builder import upsample
    from sr_lab import flags, wald
    from dataset_builder.tiles import DEFAULT_SCENES
    from reference_train import model, recipe, train_args
    from shards.writer import DEFAULT_SHARD_BYTES

    subs = subparsers()
    synth_help = subs["synth"].format_help()
    assert all(t in synth_help for t, *_ in DEFAULT_SCENES) and f"{len(DEFAULT_SCENES)} tiles" in synth_help
    assert "v2" in subs["build"].format_help()
    assert "dsen2" not in cli.DEMO_EPILOG.split("faster builds")[0]  # the default is not offered as a way up
    assert tuple(train_args.ARCH_NAMES) == tuple(model.ARCHS) and train_args.MIXUP_MODES == recipe.MIXUP_MODES
    assert flags.METHODS == tuple(upsample.available()) and flags.DEGRADATIONS == wald.MODES
    assert options_byte_size(cli.DEFAULT_SHARD_SIZE) == DEFAULT_SHARD_BYTES


def options_byte_size(text: str) -> int:
    from bigearth.options import byte_size
    return byte_size(text)


@pytest.mark.parametrize("argv", [["--help"], *[[c, "--help"] for c in COMMANDS]])
def test_help_imports_neither_torch_nor_tensorflow(argv):
    code = ("import sys\nfrom bigearth_cli.cli import main\n"
            f"try:\n    main({argv!r})\nexcept SystemExit as e:\n    assert e.code == 0, e.code\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'tensorflow', 'torchvision', "
            "'sklearn', 'tensorflow_datasets'))\nprint('HEAVY', heavy)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "HEAVY []" in r.stdout, r.stdout[-500:]


def test_val_is_taken_for_validation(capsys):
    p = subparsers()["evaluate"]
    args = p.parse_args(["--checkpoint", "c", "--data", "d", "--out", "o", "--split", "val"])
    assert args.split == "validation"
    assert "'val' is called 'validation'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        p.parse_args(["--checkpoint", "c", "--data", "d", "--out", "o", "--split", "none"])


def test_version_is_the_installed_distributions(capsys):
    from importlib.metadata import version
    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"bigearth-sr {version('bigearth-sr')}"
