#!/bin/bash
# Run a command (srun ...) so that the stop SLURM sends the batch shell reaches it:
#   #SBATCH --signal=B:TERM@120       (SIGTERM to this shell 120 s before the time limit)
#   exec scripts/forward_stop.sh srun ...
# A batch shell waiting on a foreground command runs no trap until the command ends, and SLURM
# kills everything at the limit: here the command runs in the background, SIGTERM and SIGHUP are
# passed on to it (srun passes them to every task: each command stops as after Ctrl-C, with one
# line, its checkpoint or finished parts kept, exit 143), and this script ends with its exit code.
set -u
"$@" &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null' TERM
trap 'kill -HUP "$pid" 2>/dev/null' HUP
rc=0
wait "$pid" || rc=$?
while kill -0 "$pid" 2>/dev/null; do  # a trapped signal ends `wait` early: wait for the command's own end
    rc=0
    wait "$pid" || rc=$?
done
exit "$rc"
