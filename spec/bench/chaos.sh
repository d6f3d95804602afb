#!/usr/bin/env bash
# chaos.sh: kills, stops and restarts real warren processes on loopback and checks that nothing is
# corrupted silently, that tunnels come back, that 200 -R clients re-register without a storm, and
# that a relay and a client short of descriptors keep serving. Prints the figures and one
# PASS/FAIL line per criterion; exits 1 on any FAIL.
set -euo pipefail

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=lib.sh
source "$REPO_DIR/spec/bench/lib.sh"

readonly PORT_LO=15000 PORT_HI=15999 # attack 14000-, soak 16000-, bench 17000-, stress 18000-
readonly ALL_PHASES=(faults restart fdlimit)
readonly BLOB_MIB=16        # the file moved through the tunnel
readonly SLOW_BLOCK=262144  # the slow reader takes this many bytes ...
readonly SLOW_PAUSE=0.05    # ... then sleeps this long: about 3 MiB/s, so a fault lands mid-way
readonly RECOVER_S=30       # a tunnel must carry a byte-exact transfer again within this
WORK="" SPAWNED="" PORT_NEXT=$PORT_LO FAILED=0 QUICK=0 ONLY=""
PIDS=()
WARREN_BIN=${WARREN_BIN:-} LOADGEN=""

usage() {
    cat <<EOF
usage: spec/bench/chaos.sh [--quick] [--only LIST] [-h]

Phases (all on 127.0.0.1, every process started here is stopped at the end):
  faults    a ${BLOB_MIB} MiB transfer through warren -L (socat, read at ~4 MiB/s, sha256 checked)
            is hit mid-way by SIGKILL of the relay, SIGKILL of the client, SIGSTOP/SIGCONT of the
            relay and of the client (5 s; --quick: 3 s; full also 20 s, past the 15 s keepalive).
            The cut transfer must fail loudly (the reader sees a reset) or arrive byte-exact, never
            different, and never short with a clean close, except when the client itself is
            killed (its kernel closes with a FIN; then only a clean prefix is checked); then a
            new transfer must be byte-exact within
            ${RECOVER_S} s (the killed process is started again, the client reconnects by itself)
  restart   200 warren -R clients (--quick: 50) registered on one relay; the relay is stopped
            (SIGTERM) and started again: all must be re-registered within 60 s; reported: time
            to the last one, when 10/50/90% were back, connections per second at the relay.
            No storm: connections at the relay <= 1.5 per client; jitter: no 100 ms holds more
            than a quarter of them, or 10 with fewer than 40 clients (clients in lockstep arrive
            in one or two bursts)
  fdlimit   relay and client under ulimit -n 256 with 400 connections held through the tunnel:
            both alive, a log line naming the error, under 50% of a core each while overloaded,
            and a clean stress run through the tunnel afterwards

options:
  --quick      short version for CI (well under 60 s; smaller with WARREN_SANITIZED=1)
  --only LIST  comma-separated phases from: ${ALL_PHASES[*]} (default all)
  -h, --help   this text

Needs socat (the file server), sha256sum, cmp, dd. warren and wr_loadgen: \$WARREN_BIN / \$WR_LOADGEN, else the newest
build directory holding both. Exit status: 0 all PASS, 1 any FAIL, 2 bad usage or missing tools.
EOF
}

log() { printf '[chaos %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'chaos.sh: %s\n' "$*" >&2; exit 2; }

# parse_args ARGS...: the phase options (lib.sh), then the tools this needs.
parse_args() {
    local p
    parse_phase_args "$@"
    for p in socat sha256sum cmp dd; do command -v "$p" >/dev/null || die "missing: $p"; done
}

set_scale() {
    CLIENTS=200 STOPS=(5 20)
    if ((QUICK)); then CLIENTS=50 STOPS=(3); fi
    if ((QUICK)) && [[ ${WARREN_SANITIZED:-0} == 1 ]]; then CLIENTS=20; fi
}

# ---------------------------------------------------------------- the tunnel and its transfers

# start_relay [ARGS...]: warren serve on RELAY_PORT (allocated once, reused by restarts) with the
# stats tap writing to $WORK/relay.stats every 100 ms.
start_relay() {
    [[ -n ${RELAY_PORT:-} ]] || alloc_port RELAY_PORT
    spawn relay env WR_STATS_FILE="$WORK/relay.stats" WR_STATS_MS=100 \
        "$WARREN_BIN" -e "$(relay_stats_tap)" serve "127.0.0.1:$RELAY_PORT" --key-file "$WORK/key" "$@"
    RELAY_PID=$SPAWNED
    wait_listen "$RELAY_PORT" "$RELAY_PID" || die "relay did not start: $(tail -3 "$WORK/relay.log")"
}

start_client() {
    spawn client "$WARREN_BIN" -L "127.0.0.1:$LOCAL_PORT:127.0.0.1:$FILE_PORT" \
        "127.0.0.1:$RELAY_PORT" --key-file "$WORK/key"
    CLIENT_PID=$SPAWNED
    wait_listen "$LOCAL_PORT" "$CLIENT_PID" || die "client did not start: $(tail -3 "$WORK/client.log")"
}

# slow_copy FILE: stdin to FILE, SLOW_BLOCK bytes at a time with a pause after each.
slow_copy() {
    local n
    : >"$1"
    while :; do
        n=$(dd bs="$SLOW_BLOCK" count=1 iflag=fullblock status=none | tee -a "$1" | wc -c)
        ((n > 0)) || return 0
        sleep "$SLOW_PAUSE"
    done
}

# transfer OUT [slow]: fetches the blob through the tunnel into OUT; prints "RC SIZE SHA256". The
# reader is cat on bash's /dev/tcp: it exits non-zero on a reset, where socat -u exits 0.
# shellcheck disable=SC2016 # the $1 belongs to the inner bash
transfer() {
    local out=$1 rc=0
    if [[ ${2:-} == slow ]]; then
        set +e
        timeout 120 bash -c 'exec cat </dev/tcp/127.0.0.1/$1' _ "$LOCAL_PORT" 2>"$out.err" | slow_copy "$out"
        rc=${PIPESTATUS[0]}
        set -e
    else
        timeout 60 bash -c 'exec cat </dev/tcp/127.0.0.1/$1' _ "$LOCAL_PORT" >"$out" 2>"$out.err" || rc=$?
    fi
    printf '%s %s %s\n' "$rc" "$(stat -c %s "$out")" "$(sha256sum <"$out" | cut -d' ' -f1)"
}

# recover: retries a full-speed transfer until one is byte-exact; prints the seconds it took.
recover() {
    local start=$SECONDS res
    while ((SECONDS - start < RECOVER_S)); do
        res=$(transfer "$WORK/again.bin")
        if [[ $res == "0 $BLOB_SIZE $BLOB_SHA" ]]; then
            echo $((SECONDS - start))
            return 0
        fi
        sleep 0.5
    done
    echo NA
}

# fault NAME: the fault itself: signals to the relay or the client, and restarts after a kill.
fault() {
    case $1 in
        relay-kill) kill -KILL "$RELAY_PID"; stop_process "$RELAY_PID"; sleep 1; start_relay ;;
        client-kill) kill -KILL "$CLIENT_PID"; stop_process "$CLIENT_PID"; sleep 1; start_client ;;
        relay-stop-*) kill -STOP "$RELAY_PID"; sleep "${1##*-}"; kill -CONT "$RELAY_PID" ;;
        client-stop-*) kill -STOP "$CLIENT_PID"; sleep "${1##*-}"; kill -CONT "$CLIENT_PID" ;;
    esac
}

has_bytes() { (($(stat -c %s "$1" 2>/dev/null || echo 0) >= $2)); }

# one_fault NAME: a slow transfer, the fault when a quarter has arrived, then the verdicts.
one_fault() {
    local name=$1 bg rc size sha outcome ok secs at
    rm -f "$WORK/cut.bin"
    transfer "$WORK/cut.bin" slow >"$WORK/cut.res" &
    bg=$!
    PIDS+=("$bg")
    wait_until 20 has_bytes "$WORK/cut.bin" $((BLOB_SIZE / 4)) || log "$name: the transfer did not get going"
    at=$(stat -c %s "$WORK/cut.bin" 2>/dev/null || echo 0)
    fault "$name"
    wait "$bg" || true
    stop_process "$bg"
    read -r rc size sha <"$WORK/cut.res"
    if [[ $rc == 0 && $size == "$BLOB_SIZE" && $sha == "$BLOB_SHA" ]]; then
        outcome="completed byte-exact"
        ok=PASS
    elif ! cmp -s -n "$size" "$WORK/cut.bin" "$WORK/blob"; then
        outcome="CORRUPT: the bytes received are not the blob's (exit $rc, $size bytes)"
        ok=FAIL
    elif [[ $rc != 0 ]]; then
        outcome="failed loudly (reader exit $rc: $(tail -1 "$WORK/cut.bin.err"))"
        ok=PASS
    elif [[ $name == client-kill ]]; then
        # The reader's peer is the killed process: the kernel closes its socket with a FIN, and no
        # tunnel can make that loud. What can be checked is that no wrong byte arrived.
        outcome="truncated by the kernel's FIN for the killed client (exit 0, a clean prefix)"
        ok=PASS
    else
        outcome="SILENT truncation: exit 0 with $size of $BLOB_SIZE bytes"
        ok=FAIL
    fi
    ((at > 0 && at < BLOB_SIZE)) || { outcome+=", but the fault did not come mid-transfer"; ok=FAIL; }
    printf '  %-14s fault at %s of %s bytes; cut transfer %s, %s bytes\n' "$name" "$at" "$BLOB_SIZE" "$outcome" "$size"
    verdict "$ok" "faults/$name: the transfer hit mid-way fails loudly or arrives byte-exact" "$outcome"
    secs=$(recover)
    verdict "$(pass_if "$secs <= $RECOVER_S")" "faults/$name: a new transfer is byte-exact afterwards" \
        "after $secs s"
}

phase_faults() {
    local f stops=()
    echo "## faults: SIGKILL and SIGSTOP/SIGCONT mid-transfer (${BLOB_MIB} MiB, sha256 $BLOB_SHA)"
    alloc_port FILE_PORT
    alloc_port LOCAL_PORT
    spawn file-server socat -U "TCP-LISTEN:$FILE_PORT,bind=127.0.0.1,reuseaddr,fork" "OPEN:$WORK/blob,rdonly"
    wait_listen "$FILE_PORT" "$SPAWNED" || die "file server did not start"
    start_relay
    start_client
    for f in "${STOPS[@]}"; do stops+=("relay-stop-$f" "client-stop-$f"); done
    for f in relay-kill client-kill "${stops[@]}"; do one_fault "$f"; done
    grep -hi -m3 'lost\|reconnected\|cannot reach' "$WORK/client.log" | sed 's/^/  client log: /' || true
    stop_process "$CLIENT_PID"
    stop_process "$RELAY_PID"
}

# ---------------------------------------------------------------- restart with -R clients

# registered_at STATS N: wall time of the first sample with N services (empty if none).
registered_at() {
    awk -v n="$2" '{ w = ""; s = -1
                     for (i = 1; i <= NF; i++) { split($i, kv, "="); if (kv[1] == "wall") w = kv[2]
                                                 if (kv[1] == "services") s = kv[2] + 0 }
                     if (s >= n) { print w; exit } }' "$1"
}

all_registered() { [[ -n $(registered_at "$WORK/relay.stats" "$CLIENTS") ]]; }

phase_restart() {
    local echo_port i t0 t_end last p10 p50 p90 attempts peak burst burst_cap before p rpids=()
    echo "## restart: $CLIENTS warren -R clients, relay stopped and started again"
    alloc_port echo_port
    alloc_port POOL_LO
    PORT_NEXT=$((PORT_NEXT + CLIENTS + 10)) # the pool is the relay's, not alloc_port's
    ((PORT_NEXT <= PORT_HI)) || PORT_NEXT=$PORT_LO
    spawn echo-r "$LOADGEN" echo-server -l "127.0.0.1:$echo_port" -d 600
    start_relay --ports "$POOL_LO-$((POOL_LO + CLIENTS + 9))" --outer-bind 127.0.0.1
    for ((i = 1; i <= CLIENTS; i++)); do
        spawn "r$i" "$WARREN_BIN" -R "127.0.0.1:0:127.0.0.1:$echo_port" --name "svc$i" \
            --client-id "chaos$i" "127.0.0.1:$RELAY_PORT" --key-file "$WORK/key"
        rpids+=("$SPAWNED")
    done
    wait_until 60 all_registered ||
        log "restart: only $(kv services "$(last_stats "$WORK/relay.stats")") of $CLIENTS registered before the restart"
    before=$(kv services "$(last_stats "$WORK/relay.stats")")
    kill -TERM "$RELAY_PID"
    wait_until 10 bash -c "! kill -0 $RELAY_PID 2>/dev/null" || true
    stop_process "$RELAY_PID"
    mv "$WORK/relay.stats" "$WORK/relay-before.stats"
    sleep 1
    t0=$(date +%s.%N)
    start_relay --ports "$POOL_LO-$((POOL_LO + CLIENTS + 9))" --outer-bind 127.0.0.1
    wait_until 60 all_registered || true
    sleep 1
    t_end=$(registered_at "$WORK/relay.stats" "$CLIENTS")
    last=$(awk -v a="${t_end:-NA}" -v b="$t0" 'BEGIN { if (a == "NA") print "NA"; else printf "%.2f", a - b }')
    p10=$(awk -v b="$t0" -v t="$(registered_at "$WORK/relay.stats" $((CLIENTS / 10)))" 'BEGIN { printf "%.2f", t - b }')
    p50=$(awk -v b="$t0" -v t="$(registered_at "$WORK/relay.stats" $((CLIENTS / 2)))" 'BEGIN { printf "%.2f", t - b }')
    p90=$(awk -v b="$t0" -v t="$(registered_at "$WORK/relay.stats" $((CLIENTS * 9 / 10)))" 'BEGIN { printf "%.2f", t - b }')
    attempts=$(kv sessions_total "$(last_stats "$WORK/relay.stats")")
    # Connections accepted per second since the restart, from the 100 ms samples.
    awk -v b="$t0" '{ for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
                      s = int(v["wall"] - b); if (s >= 0) last[s] = v["sessions_total"] }
                    END { prev = 0; for (s = 0; s in last; s++) { printf "%d ", last[s] - prev; prev = last[s] } }' \
        "$WORK/relay.stats" >"$WORK/per-second"
    peak=$(tr ' ' '\n' <"$WORK/per-second" | sort -n | tail -1)
    # The most connections between two 100 ms samples.
    burst=$(awk '{ for (i = 1; i <= NF; i++) { split($i, kv, "="); if (kv[1] == "sessions_total") s = kv[2] + 0 }
                   if (NR > 1 && s - prev > m) m = s - prev; prev = s } END { print m + 0 }' "$WORK/relay.stats")
    printf '  registered: %s before the restart, %s after it (all %s after %s s; 10%% at %s s, 50%% at %s s, 90%% at %s s)\n' \
        "$before" "$(kv services "$(last_stats "$WORK/relay.stats")")" "$CLIENTS" "$last" "$p10" "$p50" "$p90"
    # What the clients said after the restart, most frequent first (timestamps cut off).
    cat "$WORK"/r[0-9]*.log | awk -v t="$(date -u -d "@${t0%.*}" +%Y-%m-%dT%H:%M:%S)" '$1 ~ /^[0-9]/ && $1 >= t && $2 != "info"' |
        cut -d' ' -f2- | sed 's/[0-9][0-9]*/N/g' | sort | uniq -c | sort -rn | head -3 | sed 's/^/  clients: /' || true
    printf '  connections at the relay: %s in all (%s per client), per second since the restart: %s(peak %s/s, %s in one 100 ms)\n' \
        "$attempts" "$(awk -v a="$attempts" -v n="$CLIENTS" 'BEGIN { printf "%.2f", a / n }')" \
        "$(cat "$WORK/per-second")" "$peak" "$burst"
    verdict "$(pass_if "$last <= 60")" "restart: all $CLIENTS -R clients re-registered within 60 s" "$last s"
    verdict "$(pass_if "$attempts <= 1.5 * $CLIENTS")" "restart: no storm (connections <= 1.5 per client)" \
        "$attempts connections"
    # A quarter of 20 clients is within the spread of honest jitter (more than 5 in one 100 ms in
    # about 1 run of 20); clients in lockstep put all of them in one or two windows.
    burst_cap=$((CLIENTS / 4 > 10 ? CLIENTS / 4 : 10))
    verdict "$(pass_if "$burst <= $burst_cap")" "restart: backoff jitter spreads the clients (<= max(1/4, 10) in any 100 ms)" \
        "$burst of $CLIENTS in one 100 ms; 10%..90% over $(awk -v a="$p90" -v b="$p10" 'BEGIN { printf "%.2f s", a - b }')"
    kill -TERM "${rpids[@]}" 2>/dev/null || true
    for p in "${rpids[@]}"; do stop_process "$p"; done
    stop_process "$RELAY_PID"
}

# ---------------------------------------------------------------- file descriptor limit

phase_fdlimit() {
    local echo_port relay client hold cpu_r cpu_c line alive
    echo "## fdlimit: relay and client under ulimit -n 256, 400 connections held through -L"
    alloc_port echo_port
    alloc_port LOCAL_PORT
    spawn echo-fd "$LOADGEN" echo-server -l "127.0.0.1:$echo_port" -d 600
    alloc_port RELAY_PORT
    spawn relay-fd bash -c 'ulimit -n 256 && exec "$@"' _ "$WARREN_BIN" serve "127.0.0.1:$RELAY_PORT" --key-file "$WORK/key"
    relay=$SPAWNED
    wait_listen "$RELAY_PORT" "$relay" || die "relay did not start"
    spawn client-fd bash -c 'ulimit -n 256 && exec "$@"' _ "$WARREN_BIN" -L "127.0.0.1:$LOCAL_PORT:127.0.0.1:$echo_port" \
        "127.0.0.1:$RELAY_PORT" --key-file "$WORK/key"
    client=$SPAWNED
    wait_listen "$LOCAL_PORT" "$client" || die "client did not start"
    spawn hold-fd "$LOADGEN" hold -t "127.0.0.1:$LOCAL_PORT" -c 400 -d 8 -timeout 3 -q
    hold=$SPAWNED
    sleep 4 # the hold has met the limit by now
    cpu_r=$(proc_cpu_ms "$relay") cpu_c=$(proc_cpu_ms "$client")
    sleep 3
    cpu_r=$(awk -v a="$(proc_cpu_ms "$relay")" -v b="$cpu_r" 'BEGIN { printf "%.0f", (a - b) / 30 }')
    cpu_c=$(awk -v a="$(proc_cpu_ms "$client")" -v b="$cpu_c" 'BEGIN { printf "%.0f", (a - b) / 30 }')
    printf '  while overloaded: relay %s fds %s%% CPU, client %s fds %s%% CPU\n' \
        "$(proc_fds "$relay")" "$cpu_r" "$(proc_fds "$client")" "$cpu_c"
    wait "$hold" || true
    stop_process "$hold"
    grep '^hold' "$WORK/hold-fd.log" | sed 's/^/  /' || true
    alive=$( kill -0 "$relay" 2>/dev/null && kill -0 "$client" 2>/dev/null && echo 1 || echo 0)
    grep -hi -m2 'too many open files' "$WORK/client-fd.log" | sed 's/^/  client log: /' || true
    grep -hi -m2 'too many open files' "$WORK/relay-fd.log" | sed 's/^/  relay log: /' || true
    printf '  log lines naming the limit: client %s, relay %s\n' \
        "$(grep -ci 'too many open files' "$WORK/client-fd.log" || true)" "$(grep -ci 'too many open files' "$WORK/relay-fd.log" || true)"
    line=$("$LOADGEN" stress -t "127.0.0.1:$LOCAL_PORT" -c 20 -s 8192 -d 2 -i 0 -q 2>&1 | grep '^SUMMARY' || true)
    printf '  afterwards: %s\n' "${line:-no summary}"
    verdict "$(pass_if "$alive == 1")" "fdlimit: relay and client still running" "alive=$alive"
    verdict "$(pass_if "$(grep -ci 'too many open files' "$WORK/client-fd.log" "$WORK/relay-fd.log" | awk -F: '{ s += $NF } END { print s + 0 }') > 0")" \
        "fdlimit: a clear log line names the error" "see the log lines above"
    verdict "$(pass_if "$cpu_r < 50 && $cpu_c < 50")" "fdlimit: no spinning (< 50% of a core each)" \
        "relay $cpu_r%, client $cpu_c%"
    verdict "$(pass_if "$(kv errors "${line:-errors=NA}") == 0")" "fdlimit: serves cleanly once the load is gone" \
        "$(kv msgs "${line:-msgs=NA}") messages, $(kv errors "${line:-errors=NA}") errors"
    stop_process "$client"
    stop_process "$relay"
}

# ---------------------------------------------------------------- main

main() {
    parse_args "$@"
    find_tools
    set_scale
    nofile_at_least 4096
    begin_work chaos
    "$WARREN_BIN" keygen >"$WORK/key"
    head -c $((BLOB_MIB << 20)) /dev/urandom >"$WORK/blob"
    BLOB_SIZE=$((BLOB_MIB << 20))
    BLOB_SHA=$(sha256sum <"$WORK/blob" | cut -d' ' -f1)
    local started=$SECONDS
    printf '# warren chaos%s\n\n' "$( ((QUICK)) && echo ' (--quick)')"
    printf '%s, %s CPUs, warren %s, commit %s. Loopback only.\n\n' "$(date -u +%Y-%m-%dT%H:%MZ)" \
        "$(nproc)" "$WARREN_BIN" "$(git -C "$REPO_DIR" log -1 --format=%h 2>/dev/null || echo '?')"
    if phase_selected faults; then phase_faults; fi
    if phase_selected restart; then phase_restart; fi
    if phase_selected fdlimit; then phase_fdlimit; fi
    echo
    log "done in $((SECONDS - started)) s"
    if ((FAILED)); then
        echo "chaos: FAIL"
        exit 1
    fi
    echo "chaos: PASS"
}

main "$@"
