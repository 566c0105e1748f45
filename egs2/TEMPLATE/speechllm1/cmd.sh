# shellcheck shell=bash
# ====== About utils/local.py and utils/slurm.py ======
# Usage: <cmd> [options] JOB=1:<nj> <log> <command...>
# e.g.
#   utils/local.py --mem 4G JOB=1:10 exp/log/echo.JOB.log echo JOB
#
# Options:
#   --time <time>: Limit the maximum time to execute (Slurm only).
#   --mem <mem>: Limit the maximum memory usage (Slurm only).
#   --max_jobs_run <njob>: Limit the number of parallel tasks (ignored without a JOB=1:N range).
#   --num_threads <nthread>: CPU cores per task; also sets OMP_NUM_THREADS and MKL_NUM_THREADS.
#   --gpu <ngpu>: GPUs per task (local: a disjoint CUDA_VISIBLE_DEVICES set per running task).
#   --config <file>: Slurm only: how the options map to sbatch flags (default: conf/slurm.conf).
#   --rerun_all true: Also rerun the tasks whose log ends with "# Ended (code 0)" for the same command;
#                     by default a rerun runs only the tasks that failed or never finished.
#
# "JOB=1:10" is used for "array jobs" and it can control the number of parallel jobs.
# The left string of "=", i.e. "JOB", is replaced by <N> (Nth task) in the command and the log file name,
# e.g. "echo JOB" is changed to "echo 3" for the 3rd task and "echo 8" for the 8th task respectively.
# Note that the number must start with a positive number, so you can't use "JOB=0:10" for example.
#
# The command is executed directly, not through a shell: quotes, spaces and $(...) in arguments are passed
# unchanged. For a pipeline, write it out yourself: ${decode_cmd} JOB=1:4 log/x.JOB.log bash -c 'a JOB | b'
#
# utils/local.py and utils/slurm.py have a unified interface, not depending on the backend.
# The options are mapped to the backend's own options; for Slurm by "conf/slurm.conf".
# If jobs fail, your configuration might be wrong for your environment.
# More: speechllm/launch/README.md (in the speechllm source tree).
#
# The default backend is local; run e.g. "cmd_backend=slurm ./run.sh" (or edit the line below) for Slurm.
: "${cmd_backend:=local}"

# Local machine: the tasks run here, at most --max_jobs_run at once (default: all of them).
if [ "${cmd_backend}" = local ]; then

    # The other usage
    export train_cmd="utils/local.py"
    # Used for "*_recog.py"
    export decode_cmd="utils/local.py"
    # Decoding on GPUs (run.sh --gpu_inference true): each running task gets its own CUDA_VISIBLE_DEVICES
    export cuda_cmd="utils/local.py"
    # Used for data preparation, feature extraction, statistics collection and scoring
    export data_cmd="utils/local.py"

# "sbatch" on Slurm: the tasks run as one job array; edit conf/slurm.conf for your partitions.
elif [ "${cmd_backend}" = slurm ]; then

    # Training: one job; its --gpu N becomes --gres=gpu:N through conf/slurm.conf
    export train_cmd="utils/slurm.py --config conf/slurm.conf"
    # Decoding: a job array, one task per split
    export decode_cmd="utils/slurm.py --config conf/slurm.conf --mem 8G"
    # Decoding on GPUs (run.sh --gpu_inference true): --gpu 1 becomes --gres=gpu:1 through conf/slurm.conf
    export cuda_cmd="utils/slurm.py --config conf/slurm.conf --mem 16G"
    # Data preparation and scoring: short CPU tasks
    export data_cmd="utils/slurm.py --config conf/slurm.conf"

else
    echo "$0: Error: Unknown cmd_backend=${cmd_backend} (use local or slurm)" 1>&2
    return 1
fi
