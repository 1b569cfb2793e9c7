# Sourced by the launch scripts: runs mpirun so that stopping the job by hand or from a scheduler
# ends in a checkpoint.
#
# Open MPI's mpirun, on SIGTERM or SIGINT, waits odls_base_sigkill_timeout (1 s), sends the ranks
# SIGTERM, waits as long again and sends SIGKILL: a rank whose step takes longer is killed before
# it can write a checkpoint (raising the timeout delays the SIGTERM by as much). SIGUSR1, which
# mpirun forwards to every rank at once, has no such deadline. So mpirun runs in a session of its
# own (Ctrl-C in the terminal reaches this script, not mpirun and the ranks), and SIGINT, SIGTERM
# or SIGUSR1 to this script becomes SIGUSR1 to mpirun: every rank finishes its step, rank 0 writes
# a checkpoint, and the job exits with status 75 (resnext-ddp's "stopped, resume me"; README).
#   run_gracefully mpirun ARGS...   # returns mpirun's exit status
run_gracefully() {
    setsid "$@" &
    local pid=$! status=0
    trap 'kill -USR1 "$pid" 2>/dev/null || true' INT TERM USR1
    # wait returns early (status > 128) each time a trapped signal arrives
    while true; do
        wait "$pid" && status=0 || status=$?
        kill -0 "$pid" 2>/dev/null || break
    done
    trap - INT TERM USR1
    return "$status"
}
