#!/usr/bin/env bash
# A single-node Slurm on this machine, for testing `reprtools study --executor slurm` (tests/test_study_slurm.py, .ci/run).
#
#   bash scripts/slurm_local.sh up     # install (apt) if needed, configure, start munged + slurmctld + slurmd
#   bash scripts/slurm_local.sh down   # stop what `up` started
#
# Needs root and Debian/Ubuntu's slurm-wlm and munge (installed with apt-get when missing).  Everything lives in
# $SLURM_LOCAL_DIR (default /tmp/reprtools-slurm): slurm.conf, state, spool, logs; /etc/slurm is not touched.
# `up` prints `export SLURM_CONF=...` as its last line of stdout (messages go to stderr): eval it, or set SLURM_CONF,
# so sbatch/squeue/scontrol find this Slurm.  The node is this machine (hostname, CPUs and RealMemory from `slurmd -C`)
# in one partition ($SLURM_LOCAL_PARTITION, default "debug"); process tracking by /proc (proctrack/linuxproc), no task
# plugin and no cgroups, so it runs inside a container; cores and memory are scheduled (select/cons_tres,
# CR_Core_Memory); no accounting (sacct then warns, harmlessly).  `up` waits up to $SLURM_LOCAL_TIMEOUT seconds
# (default 60) for the node to be idle and exits non-zero, saying why, if it is not.
set -euo pipefail

DIR=${SLURM_LOCAL_DIR:-/tmp/reprtools-slurm}
CONF=$DIR/slurm.conf
PARTITION=${SLURM_LOCAL_PARTITION:-debug}
TIMEOUT=${SLURM_LOCAL_TIMEOUT:-60}
export SLURM_CONF=$CONF

say() { echo "slurm_local: $*" >&2; }
die() { say "$*"; exit 1; }

install_slurm() {
    command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null && return 0
    [ "$(id -u)" = 0 ] || die "slurm-wlm and munge are not installed and installing them needs root"
    command -v apt-get >/dev/null || die "slurm-wlm and munge are not installed and there is no apt-get to install them"
    say "installing slurm-wlm and munge with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q slurm-wlm munge >&2 || { apt-get update -q >&2 && apt-get install -y -q slurm-wlm munge >&2; } \
        || die "apt-get install slurm-wlm munge failed"
}

start_munge() {
    if munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then return 0; fi
    [ -s /etc/munge/munge.key ] || { mungekey --create >&2 2>/dev/null || /usr/sbin/create-munge-key -f >&2; }
    chown munge:munge /etc/munge /etc/munge/munge.key 2>/dev/null || true
    chmod 0700 /etc/munge; chmod 0600 /etc/munge/munge.key
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    runuser -u munge -- /usr/sbin/munged >&2 || die "munged did not start (see /var/log/munge/munged.log)"
    touch "$DIR/munged.started"
    for _ in $(seq 20); do
        munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && return 0
        sleep 0.25
    done
    die "munged started but munge/unmunge does not work (see /var/log/munge/munged.log)"
}

write_conf() {
    local host node
    host=$(hostname -s)
    # the first line of `slurmd -C` is this machine's node line: NodeName=HOST CPUs=... RealMemory=...
    node=$(slurmd -C | head -n 1)
    case $node in NodeName=*) ;; *) die "slurmd -C did not describe this node: $node" ;; esac
    mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log"
    cat >"$CONF" <<EOF
# written by scripts/slurm_local.sh: a one-node Slurm for tests
ClusterName=reprtools-local
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
MaxArraySize=1001
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

wait_idle() {
    local host state
    host=$(hostname -s)
    for _ in $(seq $((TIMEOUT * 2))); do
        state=$(sinfo -h -n "$host" -o %t 2>/dev/null | head -n 1 || true)
        case $state in
            idle*|mix*|alloc*|comp*) return 0 ;;
            down*|drain*|drng*) scontrol update NodeName="$host" State=RESUME >/dev/null 2>&1 || true ;;
        esac
        sleep 0.5
    done
    die "the node did not become idle within ${TIMEOUT}s (state: ${state:-none}); see $DIR/log/"
}

up() {
    [ "$(id -u)" = 0 ] || die "needs root (it starts munged, slurmctld and slurmd)"
    install_slurm
    mkdir -p "$DIR"
    if [ -f "$CONF" ] && scontrol ping 2>/dev/null | grep -q "is UP"; then
        say "already up"
    else
        write_conf
        start_munge
        slurmctld -f "$CONF" >&2 || die "slurmctld did not start; see $DIR/log/slurmctld.log"
        slurmd -f "$CONF" >&2 || die "slurmd did not start; see $DIR/log/slurmd.log"
    fi
    wait_idle
    say "up: partition $PARTITION on $(hostname -s) ($(sinfo -h -o '%c CPUs, %m MB'))"
    echo "export SLURM_CONF=$CONF"
}

stop_pidfile() {
    local file=$1 pid
    [ -f "$file" ] || return 0
    pid=$(cat "$file")
    if kill "$pid" 2>/dev/null; then
        for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$file"
}

down() {
    stop_pidfile "$DIR/slurmd.pid"
    stop_pidfile "$DIR/slurmctld.pid"
    if [ -f "$DIR/munged.started" ]; then
        stop_pidfile /run/munge/munged.pid
        rm -f "$DIR/munged.started"
    fi
    say "down"
}

case ${1:-} in
    up) up ;;
    down) down ;;
    *) echo "usage: bash scripts/slurm_local.sh up|down" >&2; exit 2 ;;
esac
