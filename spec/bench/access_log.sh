#!/usr/bin/env bash
# access_log.sh [--runs N] [--seconds S]: what the access log costs. New connections per second
# (wr_loadgen connrate: 16 dialers, a 1-byte echo each) through warren serve + warren -L, with no
# access log and with one on both the relay and the client (text, to files), run interleaved;
# prints every run, the medians and their ratio.
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

# tunnel NAME EXTRA-ARGS...: a relay and a -L client to the echo server; sets TUNNEL_PORT.
tunnel() {
    local name=$1 relay_port
    shift
    alloc_port relay_port
    alloc_port TUNNEL_PORT
    spawn "$name-relay" "$WARREN_BIN" serve "127.0.0.1:$relay_port" -k "$KEY" -q "${@//@SIDE@/relay}"
    wait_listen "$relay_port" "$SPAWNED" || die "$name relay did not start"
    spawn "$name-client" "$WARREN_BIN" -L "$TUNNEL_PORT:127.0.0.1:$ECHO_PORT" "127.0.0.1:$relay_port" -k "$KEY" -q \
        "${@//@SIDE@/client}"
    wait_listen "$TUNNEL_PORT" "$SPAWNED" || die "$name client did not start"
}

tunnel plain
PLAIN_PORT=$TUNNEL_PORT
tunnel logged --access-log "$WORK/@SIDE@-access.log"
LOGGED_PORT=$TUNNEL_PORT

rate() {
    local out
    out=$("$LOADGEN" connrate -t "127.0.0.1:$1" -c 16 -d "$SECONDS_PER_RUN" -timeout 5 -q 2>&1 | tail -1)
    kv conns_per_s "$out"
}

plain=() logged=()
for ((i = 1; i <= RUNS; i++)); do
    # Alternate which goes first, so that neither always gets the warmer machine.
    if ((i % 2)); then
        plain+=("$(rate "$PLAIN_PORT")"); logged+=("$(rate "$LOGGED_PORT")")
    else
        logged+=("$(rate "$LOGGED_PORT")"); plain+=("$(rate "$PLAIN_PORT")")
    fi
    echo "run $i: no access log ${plain[-1]} conn/s, access log ${logged[-1]} conn/s"
done
records=$(cat "$WORK"/client-access.log "$WORK"/relay-access.log | wc -l)
mp=$(median "${plain[*]}") ml=$(median "${logged[*]}")
echo "median: no access log $mp conn/s, access log $ml conn/s; logged/plain $(ratio "$ml" "$mp")" \
    "($records records written)"
