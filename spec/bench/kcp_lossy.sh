#!/usr/bin/env bash
# kcp_lossy.sh [--short]: one iperf3 stream through `warren -L` across a lossy link, comparing
# the KCP carrier (-K) with the TCP carrier under BBR and under a loss-based congestion control
# (CUBIC, or Reno where the namespace may not choose CUBIC).
#
# The link: two network namespaces joined by a veth pair; nftables in each drops LOSS percent
# (default 2) of the packets it sends, at random (`numgen random`; this kernel has no netem, so
# there is no added delay: the figures show loss alone). The client side (warren -L and iperf3 -c)
# runs in one namespace, the relay and iperf3 -s in the other. Root only.
#
#   LOSS=2 SECONDS=10 WARREN=build/release/warren spec/bench/kcp_lossy.sh
#   --short: 3 s per run (what the spec runs).
# Prints one line per carrier: "NAME MiB/s". KEEP=1 keeps the logs and iperf3's JSON.
set -euo pipefail

die() { echo "kcp_lossy: $*" >&2; exit 2; }
[[ $(id -u) == 0 ]] || die "needs root (network namespaces, nftables)"
here=$(cd "$(dirname "$0")" && pwd)
WARREN=${WARREN:-$here/../../build/release/warren}
LOSS=${LOSS:-2}
SECONDS_PER=${SECONDS:-10}
[[ ${1:-} == --short ]] && SECONDS_PER=3
for tool in ip nft iperf3 jq; do command -v "$tool" >/dev/null || die "$tool is missing"; done
[[ -x $WARREN ]] || die "no warren binary at $WARREN"

A=wr-kcp-a-$$ B=wr-kcp-b-$$
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.3
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    ip netns del "$A" 2>/dev/null || true
    ip netns del "$B" 2>/dev/null || true
    [[ -n ${KEEP:-} ]] && echo "logs kept in $WORK" || rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

ip netns add "$A"
ip netns add "$B"
ip link add "va$$" netns "$A" type veth peer name "vb$$" netns "$B"
ip -n "$A" addr add 10.77.0.1/24 dev "va$$"
ip -n "$B" addr add 10.77.0.2/24 dev "vb$$"
for ns in "$A" "$B"; do
    ip -n "$ns" link set lo up
    ip netns exec "$ns" nft -f - <<NFT
table inet lossy {
    chain out {
        type filter hook output priority 0; policy accept;
        ip daddr 10.77.0.0/24 numgen random mod 100 < $LOSS drop
    }
}
NFT
done
ip -n "$A" link set "va$$" up
ip -n "$B" link set "vb$$" up

key=$("$WARREN" keygen)
# Foreground only: `ip netns exec` execs its command, so for a background process started with it
# directly $! is the process itself (a backgrounded shell function would be a subshell).
inb() { ip netns exec "$B" "$@"; }
ina() { ip netns exec "$A" "$@"; }
ip netns exec "$B" "$WARREN" serve 10.77.0.2:8100 -K -k "$key" >"$WORK/relay.log" 2>&1 &
PIDS+=($!)
sleep 0.5

# run NAME CC LOCALPORT CLIENT-ARGS...: a client in A on LOCALPORT, one iperf3 run through it.
run() {
    local name=$1 cc=$2 port=$3 pid mibs
    shift 3
    ina sysctl -qw net.ipv4.tcp_congestion_control="$cc" 2>/dev/null
    inb sysctl -qw net.ipv4.tcp_congestion_control="$cc" 2>/dev/null
    ip netns exec "$B" iperf3 -s -1 -p 5201 >/dev/null 2>&1 & # one fresh server per run
    PIDS+=($!)
    ip netns exec "$A" "$@" >"$WORK/$name.log" 2>&1 &
    pid=$!
    PIDS+=($pid)
    sleep 1 # the client connects to its relay (a probe connection would be a test to iperf3)
    ina iperf3 -c 127.0.0.1 -p "$port" -t "$SECONDS_PER" -J >"$WORK/$name.json" 2>&1 || true
    mibs=$(jq '.end.sum_received.bits_per_second / 8 / 1048576 * 10 | floor / 10' "$WORK/$name.json" \
        2>/dev/null) || mibs=
    if [[ -n $mibs && $mibs != null ]]; then
        printf '%-28s %s MiB/s\n' "$name" "$mibs"
    else
        printf '%-28s failed: %s\n' "$name" "$(jq -r '.error // empty' "$WORK/$name.json" 2>/dev/null)"
    fi
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# A namespace other than the first may only pick the allowed algorithms (often not CUBIC).
lossy_cc=cubic
ina sysctl -qw net.ipv4.tcp_congestion_control=cubic 2>/dev/null || lossy_cc=reno
default_cc=$(ina cat /proc/sys/net/ipv4/tcp_congestion_control)

echo "loss $LOSS% each way, no added delay, $SECONDS_PER s per run"
run "warren tcp ($lossy_cc)" "$lossy_cc" 9001 "$WARREN" -L 9001:127.0.0.1:5201 10.77.0.2:8100 -k "$key"
run "warren tcp (bbr)" bbr 9002 "$WARREN" -L 9002:127.0.0.1:5201 10.77.0.2:8100 -k "$key"
run "warren -K (fast)" "$default_cc" 9003 "$WARREN" -K -L 9003:127.0.0.1:5201 10.77.0.2:8100 -k "$key"
run "warren -K (fast3)" "$default_cc" 9004 "$WARREN" -K --kcp-mode fast3 -L 9004:127.0.0.1:5201 \
    10.77.0.2:8100 -k "$key"
