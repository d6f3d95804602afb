#!/usr/bin/env bash
# access_log.sh [--runs N] [--seconds S]: what the access log costs. New connections per second
# (wr_loadgen connrate: 16 dialers, a 1-byte echo each) through warren serve + warren -L, with no
# access log and with one on both the relay and the client (text, to files), run interleaved;
# prints every run, the medians and their ratio, and the CPU time the relay and the client spent
# per connection (less disturbed than the rate by whatever else the machine runs).
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/../.." && pwd)
readonly SCRIPT_DIR REPO_DIR
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$SCRIPT_DIR/lib.sh"
readonly PORT_LO=19900 PORT_HI=19999 # reverse 19000-19899, the others below

die() { echo "access_log: $*" >&2; exit 2; }

RUNS=5
SECONDS_PER_RUN=5
while (($#)); do
    case $1 in
        --runs) RUNS=${2:?--runs needs a number}; shift 2 ;;
        --seconds) SECONDS_PER_RUN=${2:?--seconds needs a number}; shift 2 ;;
        *) die "unknown argument $1 (--runs N, --seconds S)" ;;
    esac
done

WORK=$(mktemp -d)
PIDS=()
PORT_NEXT=$PORT_LO
trap cleanup EXIT INT TERM
find_warren
LOADGEN=${WR_LOADGEN:-}
for c in "$REPO_DIR"/build*/spec/bench/wr_loadgen; do [[ -z $LOADGEN && -x $c ]] && LOADGEN=$c; done
[[ -x $LOADGEN ]] || die "wr_loadgen not found (cmake --build BUILD --target wr_loadgen, or set WR_LOADGEN)"
KEY=$("$WARREN_BIN" keygen)

alloc_port ECHO_PORT
spawn echo "$LOADGEN" echo-server -l "127.0.0.1:$ECHO_PORT"
wait_listen "$ECHO_PORT" "$SPAWNED" || die "echo server did not start"

# tunnel NAME EXTRA-ARGS...: a relay and a -L client to the echo server; sets TUNNEL_PORT and
# TUNNEL_PIDS.
tunnel() {
    local name=$1 relay_port
    shift
    alloc_port relay_port
    alloc_port TUNNEL_PORT
    spawn "$name-relay" "$WARREN_BIN" serve "127.0.0.1:$relay_port" -k "$KEY" -q "${@//@SIDE@/relay}"
    TUNNEL_PIDS=$SPAWNED
    wait_listen "$relay_port" "$SPAWNED" || die "$name relay did not start"
    spawn "$name-client" "$WARREN_BIN" -L "$TUNNEL_PORT:127.0.0.1:$ECHO_PORT" "127.0.0.1:$relay_port" -k "$KEY" -q \
        "${@//@SIDE@/client}"
    TUNNEL_PIDS="$TUNNEL_PIDS $SPAWNED"
    wait_listen "$TUNNEL_PORT" "$SPAWNED" || die "$name client did not start"
}

tunnel plain
PLAIN_PORT=$TUNNEL_PORT PLAIN_PIDS=$TUNNEL_PIDS
tunnel logged --access-log "$WORK/@SIDE@-access.log"
LOGGED_PORT=$TUNNEL_PORT LOGGED_PIDS=$TUNNEL_PIDS
TICKS=$(getconf CLK_TCK)

# cpu_ticks PIDS: user + system time of those processes so far, in clock ticks.
cpu_ticks() {
    local p total=0
    for p in $1; do total=$((total + $(awk '{ print $14 + $15 }' "/proc/$p/stat"))); done
    echo "$total"
}

# measure PORT PIDS: one connrate run; prints "CONN_PER_S CPU_US_PER_CONN".
measure() {
    local out before after
    before=$(cpu_ticks "$2")
    out=$("$LOADGEN" connrate -t "127.0.0.1:$1" -c 16 -d "$SECONDS_PER_RUN" -timeout 5 -q 2>&1 | tail -1)
    after=$(cpu_ticks "$2")
    awk -v r="$(kv conns_per_s "$out")" -v n="$(kv conns "$out")" -v t=$((after - before)) -v hz="$TICKS" \
        'BEGIN { printf "%s %.1f\n", r, (n > 0 ? t * 1e6 / hz / n : 0) }'
}

plain=() logged=() plain_cpu=() logged_cpu=() ratios=()
for ((i = 1; i <= RUNS; i++)); do
    # Alternate which goes first, so that neither always gets the warmer machine.
    if ((i % 2)); then
        p=$(measure "$PLAIN_PORT" "$PLAIN_PIDS"); l=$(measure "$LOGGED_PORT" "$LOGGED_PIDS")
    else
        l=$(measure "$LOGGED_PORT" "$LOGGED_PIDS"); p=$(measure "$PLAIN_PORT" "$PLAIN_PIDS")
    fi
    plain+=("${p% *}") plain_cpu+=("${p#* }") logged+=("${l% *}") logged_cpu+=("${l#* }")
    ratios+=("$(awk -v a="${l% *}" -v b="${p% *}" 'BEGIN { printf "%.3f\n", (b > 0 ? a / b : 0) }')")
    echo "run $i: no access log ${p% *} conn/s (${p#* } µs CPU/conn), access log ${l% *} conn/s" \
        "(${l#* } µs CPU/conn); logged/plain ${ratios[-1]}"
done
records=$(cat "$WORK"/client-access.log "$WORK"/relay-access.log | wc -l)
mp=$(median "${plain[*]}") ml=$(median "${logged[*]}")
echo "median: no access log $mp conn/s, access log $ml conn/s; ratio of medians $(ratio "$ml" "$mp")," \
    "median of the paired ratios $(median "${ratios[*]}")"
echo "median CPU per connection (relay + client): no access log $(median "${plain_cpu[*]}") µs," \
    "access log $(median "${logged_cpu[*]}") µs ($records records written)"
