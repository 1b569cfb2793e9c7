#!/usr/bin/env bash
# A cluster of N "nodes" on this machine, for rehearsing multi-node runs: each node is a Linux
# network namespace with its own address on a private bridge, its link shaped with tc (netem) to
# --rate and --delay; Open MPI starts its daemon in each namespace through an rsh agent that
# enters the namespace instead of ssh, and the ranks talk over TCP between them. Then
# launch/cluster.sh runs through it; this script's exit status is the run's. Everything it
# created is removed on exit (also on Ctrl-C or failure). Needs root and iproute2 (`ip`, `tc`).
#   launch/simulated-cluster.sh --nodes 2 [--ranks-per-node 1] [--rate 10gbit] [--delay 50us] [-- TRAIN_OPTIONS...]
# --rate shapes each node's outgoing link with tc's token bucket (tbf); --delay needs the netem
# qdisc (kernel module sch_netem), which some kernels (this project's VMs) lack: then it is refused.
# Traffic stays on the addresses it creates (10.213.N.0/24); nothing leaves the machine.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
nodes=2 per=1 rate=10gbit delay=""
while [ $# -gt 0 ]; do
    case "$1" in
        --nodes) nodes="$2"; shift 2 ;;
        --ranks-per-node) per="$2"; shift 2 ;;
        --rate) rate="$2"; shift 2 ;;
        --delay) delay="$2"; shift 2 ;;
        --) shift; break ;;
        *) break ;;
    esac
done
[ "$(id -u)" -eq 0 ] || { echo "launch/simulated-cluster.sh: network namespaces need root (run it as root, or on a real cluster use launch/cluster.sh)" >&2; exit 2; }
command -v ip >/dev/null && command -v tc >/dev/null || { echo "launch/simulated-cluster.sh: needs ip and tc (Debian: apt-get install iproute2)" >&2; exit 2; }
[[ "$nodes" =~ ^[1-9][0-9]?$ && "$per" =~ ^[1-9][0-9]*$ ]] || { echo "launch/simulated-cluster.sh: --nodes (1-99) and --ranks-per-node must be positive numbers" >&2; exit 2; }

id="rs$$"                # names: bridge, veths and namespaces carry this run's pid
subnet="10.213.$(( $$ % 250 ))"
work="$(mktemp -d)"
bridge="${id}br"
cleanup() {
    for i in $(seq 1 "$nodes"); do
        # what still runs in a node (a daemon on its way out) would keep its namespace alive
        for pid in $(ip netns pids "${id}n$i" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
        ip link del "${id}v$i" 2>/dev/null || true
        ip netns del "${id}n$i" 2>/dev/null || true
    done
    ip link del "$bridge" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

ip link add "$bridge" type bridge
ip addr add "$subnet.254/24" dev "$bridge"
ip link set "$bridge" up
: >"$work/hostfile"
for i in $(seq 1 "$nodes"); do
    ns="${id}n$i"
    ip netns add "$ns"
    ip link add "${id}v$i" type veth peer name eth0 netns "$ns"
    ip link set "${id}v$i" master "$bridge" up
    ip netns exec "$ns" ip link set lo up
    ip netns exec "$ns" ip addr add "$subnet.$i/24" dev eth0
    ip netns exec "$ns" ip link set eth0 up
    # the node's outgoing link: a token bucket at the rate (bursts of 1 ms at that rate), and the
    # one-way delay where asked
    if [ -n "$delay" ]; then
        ip netns exec "$ns" tc qdisc add dev eth0 root netem rate "$rate" delay "$delay" 2>/dev/null \
            || { echo "launch/simulated-cluster.sh: --delay needs tc's netem qdisc, which this kernel lacks (module sch_netem); run without --delay" >&2; exit 2; }
    else
        ip netns exec "$ns" tc qdisc add dev eth0 root tbf rate "$rate" burst 1mbit latency 50ms
    fi
    echo "$subnet.$i ns=$ns" >>"$work/map"
    echo "$subnet.$i slots=$per" >>"$work/hostfile"
done
# Open MPI's rsh agent: "agent [options] HOST COMMAND...": run COMMAND inside HOST's namespace
cat >"$work/netns-rsh" <<EOF
#!/bin/sh
while [ \$# -gt 0 ]; do case "\$1" in -*) shift ;; *) break ;; esac; done
host=\$1; shift
ns=\$(sed -n "s/^\$host ns=//p" "$work/map")
[ -n "\$ns" ] || { echo "netns-rsh: no simulated node \$host" >&2; exit 255; }
exec ip netns exec "\$ns" /bin/sh -c "\$*"
EOF
chmod +x "$work/netns-rsh"
echo "simulated cluster: $nodes node(s) x $per rank(s), links of $rate${delay:+ and $delay} each way, $subnet.0/24 (hostfile $work/hostfile)"
# mpi_yield_when_idle: a rank waiting for a message yields its core. All "nodes" share this
# machine's cores, and the kernel moves their packets (veth, bridge) in softirqs that a rank
# spinning on every core delays by a scheduler tick: 35 ms per small allreduce on 2 cores, 5 ms
# with yielding. Real nodes have their own cores for this, so yielding is closer to them.
# --bind-to none (after cluster.sh's --bind-to core): each node's daemon would bind its first rank
# to core 0, the same core for every node (the nodes share this machine's cores): half speed at
# 2 nodes on 2 cores. Unbound, the kernel spreads them.
export MPIRUN_ARGS="${MPIRUN_ARGS:-} --bind-to none --mca mpi_yield_when_idle 1 --mca plm_rsh_agent $work/netns-rsh --mca plm_rsh_no_tree_spawn 1 --mca routed direct --mca btl tcp,self --mca btl_tcp_if_include $subnet.0/24 --mca oob_tcp_if_include $subnet.0/24"
status=0
"$here/launch/cluster.sh" --hostfile "$work/hostfile" -np $(( nodes * per )) "$@" || status=$?
exit "$status"
