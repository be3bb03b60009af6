"""The reference trainer with one rank failing at one step, for tests/test_train.py: fault
injection lives here, not in the trainer's flags.

    torchrun ... tests/fail_at.py RANK:STEP <trainer arguments>
"""
import sys

from bigearth.distinfo import rank_world
from reference_train import train


def main() -> int:
    fail_rank, fail_step = map(int, sys.argv[1].split(":"))
    step_fn, steps = train.train_step, [0]

    def failing_step(*args, **kwargs):
        rank = rank_world()[0]
        if rank == fail_rank and steps[0] == fail_step:
            raise RuntimeError(f"rank {rank}: failing at step {fail_step} as asked")
        steps[0] += 1
        return step_fn(*args, **kwargs)

    train.train_step = failing_step
    return train.main(train.get_args_parser().parse_args(sys.argv[2:]))


if __name__ == "__main__":
    sys.exit(main())
