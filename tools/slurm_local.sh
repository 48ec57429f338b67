#!/usr/bin/env bash
# A real one-node Slurm cluster on this machine, for trying `tenancy sweep --executor slurm`
# and for its integration test: Debian's slurm-wlm and munge, the daemons in the background
# (no systemd), proctrack/linuxproc (no cgroups needed), select/cons_tres, one CPU-only node
# described by `slurmd -C` (so its CPUs and RealMemory match this machine), no accounting.
#
#   tools/slurm_local.sh up      # install what is missing (apt-get, root), write the config, start
#   tools/slurm_local.sh down    # stop the daemons this script started
#   tools/slurm_local.sh status  # sinfo
#   tools/slurm_local.sh install # only install slurm-wlm and munge where missing (CI)
#
# The config goes to /etc/slurm/slurm.conf (so srun, sbatch and submitit find it with no
# variable set); a slurm.conf that this script did not write is never touched.
set -euo pipefail

STATE=${SLURM_LOCAL_STATE:-/var/lib/tenancy-slurm}
CONF=/etc/slurm/slurm.conf
MARK="# written by tenancy tools/slurm_local.sh"

die() { echo "error: $*" >&2; exit 2; }

install() {
    command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
        && command -v sbatch >/dev/null && return
    [ "$(id -u)" = 0 ] || die "slurm-wlm and munge are not installed and this is not root (apt-get needs root)"
    command -v apt-get >/dev/null || die "slurm-wlm and munge are not installed and there is no apt-get"
    echo "installing slurm-wlm and munge (apt-get)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq slurm-wlm munge >/dev/null
}

write_conf() {
    if [ -e "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
        die "$CONF exists and was not written by this script; not touching a real cluster's config"
    fi
    local node host
    node=$(slurmd -C | head -1)   # NodeName=<host> CPUs=... RealMemory=...
    host=$(hostname -s)
    mkdir -p "$STATE/ctld" "$STATE/spool" /etc/slurm
    cat >"$CONF" <<EOF
$MARK
ClusterName=tenancy-local
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=30
MinJobAge=300
$node State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

start_munge() {
    mkdir -p "$STATE"
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then return; fi
    [ -s /etc/munge/munge.key ] || mungekey --create --keyfile /etc/munge/munge.key
    chown munge:munge /etc/munge/munge.key && chmod 600 /etc/munge/munge.key
    mkdir -p /run/munge /var/log/munge /var/lib/munge && chown munge:munge /run/munge /var/log/munge /var/lib/munge
    runuser -u munge -- /usr/sbin/munged
    touch "$STATE/munged.ours"  # started here: `down` stops it too
    for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return; sleep 0.1; done
    die "munged did not start (see /var/log/munge/munged.log)"
}

start_daemon() {  # name: started in the foreground mode (-D), in the background of this shell
    local name=$1 pidfile=$STATE/$1.bg.pid
    if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then return; fi
    setsid "/usr/sbin/$name" -D >>"$STATE/$name.out" 2>&1 </dev/null &
    echo $! >"$pidfile"
}

up() {
    [ "$(id -u)" = 0 ] || die "run as root: slurmd and munged need it"
    install
    write_conf
    start_munge
    start_daemon slurmctld
    for _ in $(seq 100); do scontrol ping 2>/dev/null | grep -q UP && break; sleep 0.2; done
    start_daemon slurmd
    local host; host=$(hostname -s)
    for _ in $(seq 150); do
        state=$(sinfo -h -n "$host" -o %T 2>/dev/null || true)
        case "$state" in idle*|mixed*|allocated*) echo "slurm up: node $host $state" >&2; return 0;; esac
        sleep 0.2
    done
    scontrol update NodeName="$host" State=RESUME 2>/dev/null || true
    sleep 1
    state=$(sinfo -h -n "$host" -o %T 2>/dev/null || true)
    case "$state" in idle*|mixed*|allocated*) echo "slurm up: node $host $state" >&2; return 0;; esac
    die "slurm did not come up (node state '${state:-none}'; logs in $STATE)"
}

down() {
    for name in slurmd slurmctld; do
        local pidfile=$STATE/$name.bg.pid
        if [ -s "$pidfile" ]; then
            pid=$(cat "$pidfile")
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -9 "$pid" 2>/dev/null || true
            rm -f "$pidfile"
        fi
    done
    if [ -e "$STATE/munged.ours" ] && [ -s /run/munge/munged.pid ]; then
        kill "$(cat /run/munge/munged.pid)" 2>/dev/null || true
        rm -f "$STATE/munged.ours"
    fi
    echo "slurm down" >&2
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) sinfo ;;
    install) install ;;
    *) echo "usage: $0 up|down|status|install" >&2; exit 2 ;;
esac
