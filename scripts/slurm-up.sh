#!/usr/bin/env bash
# Starts a one-node Slurm cluster on this machine (munge, slurmctld, slurmd), for the tests
# that run jobs under `srun`. Installs the Debian packages when missing (needs root), writes
# a configuration for this host (its name, CPUs and memory), and waits until the node
# accepts jobs. Idempotent: when the cluster already answers, it only says so.
#
#   bash scripts/slurm-up.sh          # start (or check) the cluster
#   bash scripts/slurm-up.sh --down   # stop the daemons and remove the configuration
set -euo pipefail

conf_dir=/etc/slurm
conf=$conf_dir/slurm.conf
state=/var/lib/cobre-comm-slurm
marker="# written by cobre-comm scripts/slurm-up.sh"

say() { echo "slurm-up: $*"; }

down() {
    pkill -x slurmd 2>/dev/null || true
    pkill -x slurmctld 2>/dev/null || true
    for _ in $(seq 100); do
        pgrep -x slurmd >/dev/null || pgrep -x slurmctld >/dev/null || break
        sleep 0.1
    done
    if [ -f "$conf" ] && grep -q "$marker" "$conf"; then
        rm -f "$conf" "$conf_dir/cgroup.conf"
    fi
    rm -rf "$state"
    say "stopped"
}

if [ "${1:-}" = "--down" ]; then
    down
    exit 0
fi

if [ "$(id -u)" != 0 ]; then
    echo "slurm-up: needs root (it installs packages and starts daemons)" >&2
    exit 1
fi

ready() {
    timeout 5 sinfo --noheader --format=%T 2>/dev/null | grep -Eq '^(idle|mixed|allocated)'
}

if command -v sinfo >/dev/null 2>&1 && ready; then
    say "already running: $(sinfo --noheader --format='%N %T %c CPUs')"
    exit 0
fi

if ! command -v slurmctld >/dev/null 2>&1 || ! command -v slurmd >/dev/null 2>&1 \
    || ! command -v munged >/dev/null 2>&1 || ! command -v srun >/dev/null 2>&1; then
    say "installing slurmctld slurmd munge slurm-client"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmctld slurmd munge slurm-client >/dev/null
fi

# munge: one key, owned by the munge user, and its daemon.
if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
if ! munge -n >/dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged --force
    for _ in $(seq 50); do munge -n >/dev/null 2>&1 && break; sleep 0.1; done
fi
munge -n | unmunge >/dev/null

# The configuration of this host.
host=$(hostname -s)
# The tests start more ranks than this machine has cores (4 on 2): declare at least 8
# CPUs and let the configuration override what slurmd detects.
cpus=$(nproc)
[ "$cpus" -ge 8 ] || cpus=8
mem_mb=$(awk '/MemTotal/ { printf "%d", $2 / 1024 * 0.9 }' /proc/meminfo)
mkdir -p "$conf_dir" "$state/ctld" "$state/d" /var/log/slurm
if [ -f "$conf" ] && ! grep -q "$marker" "$conf"; then
    echo "slurm-up: $conf exists and was not written by this script; not touching it" >&2
    exit 1
fi
cat >"$conf" <<EOF
$marker
ClusterName=cobre
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
SlurmdParameters=config_overrides
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/d
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
NodeName=$host CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF

pgrep -x slurmctld >/dev/null || slurmctld
pgrep -x slurmd >/dev/null || slurmd
for _ in $(seq 100); do
    if ready; then
        say "running: $(sinfo --noheader --format='%N %T %c CPUs')"
        exit 0
    fi
    scontrol update nodename="$host" state=resume >/dev/null 2>&1 || true
    sleep 0.2
done
echo "slurm-up: the node did not become ready; logs in /var/log/slurm" >&2
sinfo >&2 || true
exit 1
