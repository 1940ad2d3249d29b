#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, for the tests of cluster runs (sbatch --array with the CLI, submitit
# from Python) against a real Slurm: slurmctld and slurmd from Debian's slurm-wlm, on localhost.
#
#   scripts/slurm_local.sh start    # idempotent; prints `export SLURM_CONF=...` for the clients (sbatch, squeue)
#   scripts/slurm_local.sh stop     # stops the daemons this script started (by their pid files)
#   scripts/slurm_local.sh status   # exit 0 when the node answers and is idle or busy
#
# Nothing system-wide is configured: slurm.conf, state, logs and pid files live in $SCORELENS_SLURM_DIR (default
# /tmp/scorelens-slurm-$UID). No cgroups (proctrack/linuxproc, task/none), no accounting database (so `sacct`
# answers that accounting is disabled; submitit then learns that a job is done from its result file). Requests are
# authenticated by a private munged (its own key, made at each start, and socket in that folder): slurmctld listens
# on every interface, and auth/none (which Debian's build also ships) would let anyone who reaches the port run
# jobs as any user. The daemons run as the calling user, as do the jobs. Ports: $SCORELENS_SLURM_PORT (default
# 16817) for slurmctld and the next one for slurmd, so a real Slurm on the machine is left alone.
set -euo pipefail

dir="${SCORELENS_SLURM_DIR:-/tmp/scorelens-slurm-$(id -u)}"
port="${SCORELENS_SLURM_PORT:-16817}"
timeout_s="${SCORELENS_SLURM_TIMEOUT:-60}"
conf="$dir/slurm.conf"
export SLURM_CONF="$conf"

fail() {
    echo "slurm_local: $*" >&2
    for log in "$dir/munged.log" "$dir/slurmctld.log" "$dir/slurmd.log"; do
        [ -s "$log" ] && { echo "--- last lines of $log" >&2; tail -n 15 "$log" >&2; }
    done
    exit 1
}

# The node's state as sinfo reports it ("idle", "mix", "alloc", "down*", ...), or nothing when slurmctld does not
# answer.
node_state() { sinfo --noheader --format=%T 2>/dev/null | head -n 1 || true; }

# A usable node: up and answering (a trailing `*` means slurmd does not respond; `~`, `#`, `%` power states).
usable() {
    case "$1" in *[*~#%!$]*) return 1 ;; idle* | mix* | alloc* | completing*) return 0 ;; *) return 1 ;; esac
}

# Whether the daemon named by its pid file in $dir is alive.
alive() {
    local pid
    pid="$(cat "$dir/$1.pid" 2>/dev/null || true)"
    [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$1" ]
}

running() {
    [ -f "$conf" ] && alive munged && alive slurmctld && alive slurmd || return 1
    usable "$(node_state)"
}

write_conf() {
    local user host cpus memory
    user="$(id -un)"
    host="$(hostname -s)"
    cpus="$(nproc)"
    # slurmd refuses a node that claims more memory than it has; give Slurm three quarters of it (MiB).
    memory="$(awk '/^MemTotal:/ { printf "%d", $2 / 1024 * 3 / 4 }' /proc/meminfo)"
    mkdir -p "$dir/state" "$dir/spool"
    cat >"$conf" <<EOF
# Written by scripts/slurm_local.sh: a one-node test cluster.
ClusterName=scorelens
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=$user
SlurmdUser=$user
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge.sock
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
MailProg=/bin/true
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
ReturnToService=2
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# Quick turnaround: a finished array task frees its CPU for the next one at once.
MinJobAge=300
KillWait=5
InactiveLimit=0
SlurmdTimeout=60
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

start() {
    local program
    for program in slurmctld slurmd sbatch munged; do
        command -v "$program" >/dev/null 2>&1 ||
            fail "$program not found (apt-get install slurmctld slurmd slurm-client munge)"
    done
    if running; then
        echo "export SLURM_CONF=$conf"
        return 0
    fi
    stop_daemons
    rm -rf "$dir/state" "$dir/spool" "$dir"/*.log "$dir/munge.key" "$dir/munge.seed"
    # munged wants the socket's folder searchable by all and its key readable by its owner alone.
    mkdir -p "$dir"
    chmod 755 "$dir"
    head -c 1024 /dev/urandom >"$dir/munge.key"
    chmod 400 "$dir/munge.key"
    munged --socket="$dir/munge.sock" --key-file="$dir/munge.key" --pid-file="$dir/munged.pid" \
        --log-file="$dir/munged.log" --seed-file="$dir/munge.seed" || fail "munged did not start"
    write_conf
    # -i: ignore state left by an earlier cluster in this folder (there is none: removed above).
    slurmctld -f "$conf" -i || fail "slurmctld did not start"
    slurmd -f "$conf" || fail "slurmd did not start"
    local waited=0 state
    while :; do
        state="$(node_state)"
        # Idle, as told by our own daemons: another Slurm on the same ports would answer for one that died.
        [ "$state" = idle ] && alive slurmctld && alive slurmd && break
        if [ "$waited" -ge 8 ] && ! { alive slurmctld && alive slurmd; }; then
            stop_daemons
            fail "slurmctld or slurmd exited (ports $port-$((port + 1)) taken? set SCORELENS_SLURM_PORT)"
        fi
        if [ "$waited" -ge "$((timeout_s * 4))" ]; then
            stop_daemons
            fail "the node is not idle after ${timeout_s} s (state: '${state:-slurmctld does not answer}')"
        fi
        sleep 0.25
        waited=$((waited + 1))
    done
    echo "export SLURM_CONF=$conf"
}

stop_daemons() {
    local name pid
    for name in slurmd slurmctld munged; do
        [ -f "$dir/$name.pid" ] || continue
        pid="$(cat "$dir/$name.pid")"
        # Only a process of that name: a stale pid file must not kill whatever now holds the number.
        if alive "$name"; then
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 40); do [ -d "/proc/$pid" ] || break; sleep 0.25; done
            [ -d "/proc/$pid" ] && kill -9 "$pid" 2>/dev/null || true
        fi
        rm -f "$dir/$name.pid"
    done
}

case "${1:-}" in
start) start ;;
stop) stop_daemons ;;
status) running ;;
*)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
