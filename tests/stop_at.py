"""A command that waits at a chosen point for the test to stop it, for tests/test_stopping.py:
stopping lives in the commands, the timing of the stop here, not in the commands' flags.

    python tests/stop_at.py MODULE:FUNCTION:N READY_FILE cli|tfds <the command's arguments>

The N-th call of MODULE.FUNCTION (in this process) first writes READY_FILE, then waits up to a
minute, where the test's signal reaches the command as it would mid-way; then it goes on.
"""
import importlib
import sys
import time
from pathlib import Path


def main() -> int:
    target, ready, kind, argv = sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[4:]
    module, name, nth = target.split(":")
    mod = importlib.import_module(module)
    real, calls = getattr(mod, name), [0]

    def waiting(*args, **kwargs):
        calls[0] += 1
        if calls[0] == int(nth):
            ready.write_text("ready")
            time.sleep(60)  # a signal's handler raises out of the sleep
        return real(*args, **kwargs)

    setattr(mod, name, waiting)
    if kind == "cli":
        from bigearth_cli.cli import main as cli
        return cli(argv)
    from tensorflow_datasets.scripts.cli.main import launch_cli
    sys.argv = ["tfds", *argv]
    return launch_cli()


if __name__ == "__main__":
    sys.exit(main())
