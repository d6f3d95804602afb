#!/usr/bin/env bash
# stress.sh: warren's end-to-end stress test. Many connections each send a message, verify every
# echoed byte and send the next one at once, through a direct connection, warren -L and
# shadowsocks-libev in the same run, and the script prints one Markdown table with the ratio
# warren / shadowsocks. It starts and stops everything it measures; run it with --help.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/../.." && pwd)
readonly SCRIPT_DIR REPO_DIR
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$SCRIPT_DIR/lib.sh"
readonly ALL_PEERS=(direct warren warren-tls warren-ws warren-wss warren-http warren-kcp ss)
readonly PORT_LO=18000 PORT_HI=18999
readonly TARGET_RATIO=3

RUNS=3
CONNS=500
MSGS=0
SIZE=8192
DURATION=""
INTERVAL=1
ONLY=""
VERBOSE=0
LOADGEN=${WR_LOADGEN:-}
WARREN_BIN=${WARREN_BIN:-}
WARREN_KEY=""
WORK=""
PORT_NEXT=0
PIDS=()      # every process started, for cleanup
PEER_PIDS=() # the tunnel being measured
PEER_PORT="" # where the load generator connects
FAILED=0     # runs with an error, a corruption, or no result
declare -A RES=() # "peer:metric" -> space-separated values, one per run
declare -A LABEL=([direct]="direct" [warren]="warren -L" [ss]="shadowsocks" [warren-tls]="warren -L tls://"
    [warren-ws]="warren -L ws://" [warren-wss]="warren -L wss://" [warren-http]="warren -L http://"
    [warren-kcp]="warren -L kcp://")

usage() {
    cat <<EOF
usage: spec/bench/stress.sh [--runs N] [-conns N] [-msgs M] [-size BYTES] [-duration SECS]
                            [-interval SECS] [--only LIST] [--loadgen PATH] [--verbose]

Stress test on 127.0.0.1, no think time: N connections each send a SIZE-byte message, wait for
its echo, verify every byte and send the next one at once, for the duration (or M messages each).
In one invocation it measures, run after run, each of these paths to an echo server:
  direct   the load generator straight to the echo server
  warren   warren -L 127.0.0.1:L:127.0.0.1:ECHO through warren serve (random key)
  warren-tls, warren-ws, warren-wss, warren-http, warren-kcp
           the same over tls://, ws://, wss://, http:// (a relay with --tls and a pinned
           self-signed certificate) and kcp:// (a relay with -K)
  ss       ss-tunnel -L 127.0.0.1:ECHO through ss-server (shadowsocks-libev, chacha20-ietf-poly1305)
Every tunnel is started fresh for each run and stopped after it. The load generator is
wr_loadgen stress; the echo server runs inside it ('stress -l'), so its SERVER: lines are the
echo server's own view of what came out of the tunnel.

It prints each run's SUMMARY line, then a Markdown table per path: messages/s (median over runs),
MB/s of verified echo (median), p50 and p99 round-trip latency (median over runs), the largest
latency of any run, errors summed over runs, and the CPU time the tunnel's processes used per
message (median); then messages/s of warren -L divided by shadowsocks', with the target
(>= ${TARGET_RATIO}x) marked met or fails.

options (one or two dashes):
  --runs N           runs per path, interleaved (default 3)
  -conns N           connections (default 500)
  -msgs M            messages per connection, 0 = until the duration ends (default 0); with M
                     the duration is a cap and a connection that has not finished by then is
                     an error
  -size BYTES        message size (default 8192)
  -duration SECS     length of each run (default 10; with -msgs, wr_loadgen's cap of 60)
  -interval SECS     period of the CLIENT:/SERVER: lines (default 1; they are shown with
                     --verbose, on stderr)
  --only LIST        comma-separated paths to measure, from: ${ALL_PEERS[*]} (default all)
  --loadgen PATH     wr_loadgen binary (default: \$WR_LOADGEN, then build*/spec/bench/wr_loadgen)
  --verbose          stream every run's CLIENT:/SERVER: lines to stderr
  -h, --help         this text

warren is \$WARREN_BIN, else the warren next to the wr_loadgen found (same build directory),
else build*/warren, else warren on PATH. Nothing is built: build warren and wr_loadgen first,
with -DCMAKE_BUILD_TYPE=Release for figures worth comparing. Needs ss-server and ss-tunnel
(shadowsocks-libev) unless --only leaves ss out, and timeout (coreutils).
Ports come from ${PORT_LO}-${PORT_HI}. Each run is bounded by timeout(1) (duration + 60 s).

exit status: 0 when every run of every path finished with no error; 1 when any run had an
error (connect, timeout, reset, corrupt or extra bytes, unfinished connection, echo server
error), produced no summary, or its tunnel did not start; 2 on bad usage or missing tools.
Missing the ${TARGET_RATIO}x target is reported in the table, not in the exit status.
EOF
}

log() { printf '[stress %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'stress.sh: %s\n' "$*" >&2; exit 2; }

# ---------------------------------------------------------------- arguments and prerequisites

parse_args() {
    local opt
    while (($#)); do
        opt=$1
        [[ $opt == --?* ]] && opt=${opt#-}
        case "$opt" in
            -runs) RUNS=${2:?--runs needs N}; shift 2 ;;
            -conns) CONNS=${2:?-conns needs N}; shift 2 ;;
            -msgs) MSGS=${2:?-msgs needs M}; shift 2 ;;
            -size) SIZE=${2:?-size needs BYTES}; shift 2 ;;
            -duration) DURATION=${2:?-duration needs SECS}; shift 2 ;;
            -interval) INTERVAL=${2:?-interval needs SECS}; shift 2 ;;
            -only) ONLY=${2:?--only needs a list}; shift 2 ;;
            -loadgen) LOADGEN=${2:?--loadgen needs a path}; shift 2 ;;
            -verbose) VERBOSE=1; shift ;;
            -h | -help) usage; exit 0 ;;
            *) usage >&2; die "unknown argument: $1" ;;
        esac
    done
    [[ $RUNS =~ ^[1-9][0-9]?$ ]] || die "--runs wants 1..99, got '$RUNS'"
    [[ $CONNS =~ ^[1-9][0-9]{0,4}$ ]] || die "-conns wants 1..99999, got '$CONNS'"
    [[ $MSGS =~ ^[0-9]+$ ]] || die "-msgs wants a number, got '$MSGS'"
    [[ $SIZE =~ ^[1-9][0-9]{0,7}$ ]] || die "-size wants 1..99999999 bytes, got '$SIZE'"
    [[ -z $DURATION || $DURATION =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "-duration wants seconds, got '$DURATION'"
    [[ $INTERVAL =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "-interval wants seconds, got '$INTERVAL'"
    if [[ -z $DURATION ]] && ((MSGS == 0)); then DURATION=10; fi
    local p
    for p in ${ONLY//,/ }; do
        [[ " ${ALL_PEERS[*]} " == *" $p "* ]] || die "unknown path '$p' (known: ${ALL_PEERS[*]})"
    done
    SELECTED=()
    for p in "${ALL_PEERS[@]}"; do
        if [[ -z $ONLY || ",$ONLY," == *",$p,"* ]]; then SELECTED+=("$p"); fi
    done
    ((${#SELECTED[@]})) || die "--only selects nothing"
}

selected() { [[ " ${SELECTED[*]} " == *" $1 "* ]]; }

# The load generator, and the warren binary of the same build directory when there is one.
find_binaries() {
    local d
    if [[ -z $LOADGEN ]]; then
        for d in "$REPO_DIR"/build*/; do
            [[ -x ${d}spec/bench/wr_loadgen ]] && { LOADGEN=${d}spec/bench/wr_loadgen; break; }
        done
    fi
    [[ -n $LOADGEN && -x $LOADGEN ]] || die "wr_loadgen not found; build it:
  cmake -S $REPO_DIR -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build
or pass --loadgen PATH / set WR_LOADGEN"
    selected warren || return 0
    if [[ -z $WARREN_BIN ]]; then
        d=$(dirname "$LOADGEN")/../../warren
        [[ -x $d ]] && WARREN_BIN=$(cd "$(dirname "$d")" && pwd)/warren
    fi
    if [[ -z $WARREN_BIN ]]; then
        for d in "$REPO_DIR"/build*/warren; do
            [[ -x $d ]] && { WARREN_BIN=$d; break; }
        done
    fi
    [[ -z $WARREN_BIN ]] && WARREN_BIN=$(command -v warren 2>/dev/null || true)
    [[ -n $WARREN_BIN && -x $WARREN_BIN ]] || die "warren not found; set WARREN_BIN or use --only without warren"
}

check_prereqs() {
    local missing=() t
    command -v timeout >/dev/null || missing+=("timeout (coreutils)")
    command -v awk >/dev/null || missing+=("awk (gawk/mawk)")
    if selected ss; then
        command -v ss-server >/dev/null || missing+=("ss-server (shadowsocks-libev)")
        command -v ss-tunnel >/dev/null || missing+=("ss-tunnel (shadowsocks-libev)")
    fi
    if ((${#missing[@]})); then
        for t in "${missing[@]}"; do printf 'stress.sh: missing: %s\n' "$t" >&2; done
        die "install the packages above, or leave ss out with --only"
    fi
    find_binaries
}

raise_nofile() {
    # A tunnel process holds two descriptors per connection (ss-tunnel and ss-server both), and
    # neither shadowsocks process raises its own limit.
    local hard need=$((2 * CONNS + 256))
    hard=$(ulimit -Hn)
    [[ $hard == unlimited ]] && hard=$((need > 65536 ? need : 65536))
    ((hard >= need)) || die "ulimit -n hard limit is $hard; $CONNS connections need at least $need"
    ulimit -n "$hard"
}

# ---------------------------------------------------------------- paths

# start_peer PEER ECHO_PORT: sets PEER_PORT and PEER_PIDS; returns non-zero if it did not start.
start_peer() {
    local peer=$1 target=$2 lp rp
    PEER_PIDS=()
    if [[ $peer == direct ]]; then
        PEER_PORT=$target
        return 0
    fi
    alloc_port lp
    alloc_port rp
    PEER_PORT=$lp
    case $peer in
        warren)
            spawn warren-relay "$WARREN_BIN" serve "127.0.0.1:$rp" -k "$WARREN_KEY"
            PEER_PIDS=("$SPAWNED")
            wait_listen "$rp" "$SPAWNED" || return 1
            spawn warren-client "$WARREN_BIN" -L "127.0.0.1:$lp:127.0.0.1:$target" \
                "127.0.0.1:$rp" -k "$WARREN_KEY"
            PEER_PIDS+=("$SPAWNED")
            ;;
        warren-kcp)
            spawn warren-relay "$WARREN_BIN" serve "127.0.0.1:$rp" -k "$WARREN_KEY" -K
            PEER_PIDS=("$SPAWNED")
            wait_listen "$rp" "$SPAWNED" || return 1
            spawn warren-client "$WARREN_BIN" -L "127.0.0.1:$lp:127.0.0.1:$target" \
                "kcp://127.0.0.1:$rp" -k "$WARREN_KEY"
            PEER_PIDS+=("$SPAWNED")
            ;;
        warren-*)
            local pin scheme=${peer#warren-}
            spawn warren-relay "$WARREN_BIN" serve "127.0.0.1:$rp" -k "$WARREN_KEY" --tls \
                --self-signed "$WORK/relay-tls.pem"
            PEER_PIDS=("$SPAWNED")
            wait_listen "$rp" "$SPAWNED" || return 1
            pin=$(grep -o 'sha256:[0-9a-f]*' "$WORK/warren-relay.log" | head -1)
            spawn warren-client "$WARREN_BIN" -L "127.0.0.1:$lp:127.0.0.1:$target" \
                "$scheme://127.0.0.1:$rp" -k "$WARREN_KEY" --pin "$pin"
            PEER_PIDS+=("$SPAWNED")
            ;;
        ss)
            spawn ss-server ss-server -s 127.0.0.1 -p "$rp" -k stress-ss-pass \
                -m chacha20-ietf-poly1305 -t 300
            PEER_PIDS=("$SPAWNED")
            wait_listen "$rp" "$SPAWNED" || return 1
            spawn ss-tunnel ss-tunnel -s 127.0.0.1 -p "$rp" -b 127.0.0.1 -l "$lp" \
                -k stress-ss-pass -m chacha20-ietf-poly1305 -t 300 -L "127.0.0.1:$target"
            PEER_PIDS+=("$SPAWNED")
            ;;
    esac
    wait_listen "$lp" "${PEER_PIDS[-1]}"
}

# forget PID...: drop reaped processes from PIDS, so cleanup never signals a recycled pid.
forget() {
    local q p keep=()
    for q in "${PIDS[@]}"; do
        for p; do [[ $q == "$p" ]] && continue 2; done
        keep+=("$q")
    done
    PIDS=("${keep[@]}")
}

stop_peer() {
    local p
    for p in "${PEER_PIDS[@]}"; do kill_tree "$p"; done
    forget "${PEER_PIDS[@]}"
    PEER_PIDS=()
}

peer_log_tail() {
    log_tails 2 warren-relay warren-client ss-server ss-tunnel
}

# ---------------------------------------------------------------- runs

record() { RES[$1:$2]+="${3:-NA} "; }

# field KEY LINE: the value of KEY=VALUE in LINE (keys may contain '/', like MB/s).
field() { awk -v k="$1=" '{ for (i = 1; i <= NF; i++) if (index($i, k) == 1) { print substr($i, length(k) + 1); exit } }' <<<"$2"; }

# cpu_seconds PID...: user + system CPU time used so far by the processes and their descendants.
cpu_seconds() {
    local root p
    for root in "$@"; do
        for p in "$root" $(descendants "$root"); do
            awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || true
        done
    done | awk -v hz="$(getconf CLK_TCK)" '{ t += $1 } END { printf "%.2f\n", t / hz }'
}

record_failed_run() {
    local peer=$1 m
    for m in rate mbs p50 p99 max cpu; do record "$peer" "$m" NA; done
    record "$peer" errors NA
    record "$peer" corrupt 0
    FAILED=1
}

stress_run() {
    local peer=$1 run=$2 echo_port out rc=0 pid tailer="" summary args cpu msgs
    alloc_port echo_port
    if ! start_peer "$peer" "$echo_port"; then
        log "run $run/$RUNS ${LABEL[$peer]}: did not start"
        peer_log_tail
        stop_peer
        record_failed_run "$peer"
        return 0
    fi
    args=(stress -t "127.0.0.1:$PEER_PORT" -l "127.0.0.1:$echo_port" -c "$CONNS" -s "$SIZE"
        -n "$MSGS" -i "$INTERVAL")
    [[ -n $DURATION ]] && args+=(-d "$DURATION")
    out=$WORK/$peer.$run.out
    : >"$out"
    # In the background and waited for, so Ctrl-C reaches the trap at once.
    timeout -k 5 "$(awk -v d="${DURATION:-60}" 'BEGIN { printf "%d", d + 60 }')" \
        "$LOADGEN" "${args[@]}" >"$out" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    if ((VERBOSE)); then
        (tail -n +1 -f --pid="$pid" "$out" | sed "s/^/[${LABEL[$peer]} $run] /" >&2) &
        tailer=$!
        PIDS+=("$tailer")
    fi
    wait "$pid" || rc=$?
    if [[ -n $tailer ]]; then wait "$tailer" 2>/dev/null || true; fi
    forget "$pid" $tailer
    # The tunnel was started for this run, so its CPU time is this run's (plus a start-up).
    cpu=NA
    ((${#PEER_PIDS[@]})) && cpu=$(cpu_seconds "${PEER_PIDS[@]}")
    stop_peer
    summary=$(grep '^SUMMARY:' "$out" | tail -1 || true)
    if [[ -z $summary ]]; then
        log "run $run/$RUNS ${LABEL[$peer]}: no summary (exit $rc): $(tail -3 "$out" | tr '\n' ' ')"
        peer_log_tail
        record_failed_run "$peer"
        return 0
    fi
    printf 'run %d/%d %-12s %s\n' "$run" "$RUNS" "${LABEL[$peer]}:" "$summary"
    record "$peer" rate "$(field msgs_per_s "$summary")"
    record "$peer" mbs "$(field MB/s "$summary")"
    record "$peer" p50 "$(field p50_us "$summary")"
    record "$peer" p99 "$(field p99_us "$summary")"
    record "$peer" max "$(field max_us "$summary")"
    record "$peer" errors "$(field errors "$summary")"
    record "$peer" corrupt "$(field corrupt "$summary")"
    msgs=$(field msgs "$summary")
    record "$peer" cpu "$(awk -v c="$cpu" -v m="$msgs" 'BEGIN { if (c == "NA" || m + 0 == 0) print "NA"; else printf "%.1f", c * 1e6 / m }')"
    if ((rc != 0)); then
        FAILED=1
        log "run $run/$RUNS ${LABEL[$peer]}: wr_loadgen exit $rc; first errors:"
        grep -v -e '^CLIENT:' -e '^SERVER:' -e '^SUMMARY:' -e '^listening' "$out" | head -5 >&2 || true
        peer_log_tail
    fi
}

# ---------------------------------------------------------------- report

maximum() {
    tr ' ' '\n' <<<"$1" | awk '$1 != "" && $1 != "NA" { if (!n++ || $1 + 0 > m) m = $1 + 0 }
                               END { if (n) print m; else print "NA" }'
}

total() {
    tr ' ' '\n' <<<"$1" | awk '$1 != "" { if ($1 == "NA") na = 1; else s += $1 }
                               END { if (na) printf "%d + failed runs\n", s; else print s + 0 }'
}

ms() { awk -v v="$1" 'BEGIN { if (v == "NA" || v == "") print "n/a"; else printf "%.2f\n", v / 1000 }'; }

report() {
    local p err cor r cpu
    printf '# warren stress\n\n'
    printf '%s, %s CPUs, %s. %s connections × %s-byte messages, %s, no think time, every echoed byte verified; %s run(s) per path, interleaved. Loopback only.\n\n' \
        "$(date -u +%Y-%m-%dT%H:%MZ)" "$(nproc)" "$(uname -sr)" "$CONNS" "$SIZE" \
        "$( ((MSGS > 0)) && echo "$MSGS messages each" || echo "${DURATION} s each")" "$RUNS"
    printf '| path | msgs/s (median) | MB/s | p50 ms | p99 ms | max ms | errors | tunnel CPU µs/msg | msgs/s per run |\n'
    printf '|---|--:|--:|--:|--:|--:|--:|--:|---|\n'
    for p in "${SELECTED[@]}"; do
        err=$(total "${RES[$p:errors]:-}")
        cor=$(total "${RES[$p:corrupt]:-}")
        [[ $cor != 0 ]] && err+=" ($cor corrupt)"
        cpu=—
        [[ $p == direct ]] || cpu=$(fmt "$(med "$p" cpu)" 1)
        printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "${LABEL[$p]}" \
            "$(fmt "$(med "$p" rate)" 0)" "$(fmt "$(med "$p" mbs)" 1)" \
            "$(ms "$(med "$p" p50)")" "$(ms "$(med "$p" p99)")" \
            "$(ms "$(maximum "${RES[$p:max]:-}")")" "$err" \
            "$cpu" \
            "$(tr ' ' '\n' <<<"${RES[$p:rate]:-}" | awk '$1 != "" { printf "%s%s", sep, ($1 == "NA" ? "failed" : sprintf("%.0f", $1)); sep = ", " }')"
    done
    if selected warren && selected ss; then
        r=$(awk -v a="$(med warren rate)" -v b="$(med ss rate)" \
            'BEGIN { if (a == "NA" || b == "NA" || b + 0 == 0) print "NA"; else printf "%.2f", a / b }')
        printf '\n| target | warren -L / shadowsocks | |\n|---|--:|---|\n'
        printf '| msgs/s ≥ %s× shadowsocks | %s | %s |\n' "$TARGET_RATIO" \
            "$( [[ $r == NA ]] && echo n/a || echo "${r}×")" \
            "$(awk -v r="$r" -v t="$TARGET_RATIO" 'BEGIN { if (r == "NA") print "n/a"; else if (r + 0 >= t) print "met"; else print "**fails**" }')"
    fi
    printf '\nmsgs/s: verified echoes per second, whole run, all connections. MB/s: verified echo bytes per second (one direction). p50/p99: round-trip latency of one message (send → last echoed byte verified), median over runs; max: the largest of any run. errors: summed over runs. tunnel CPU: user + system time of the tunnel'"'"'s processes (warren: serve + -L; shadowsocks: ss-server + ss-tunnel) per verified message, median over runs; the load generator and its in-process echo server share the same CPUs.\n'
    printf 'wr_loadgen: %s\n' "$LOADGEN"
    selected warren && printf 'warren: %s\n' "$WARREN_BIN"
    return 0
}

# ---------------------------------------------------------------- main

main() {
    parse_args "$@"
    check_prereqs
    raise_nofile
    begin_work stress
    WARREN_KEY=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')

    local started=$SECONDS run p
    log "wr_loadgen: $LOADGEN"
    selected warren && log "warren: $WARREN_BIN"
    for ((run = 1; run <= RUNS; run++)); do
        for p in "${SELECTED[@]}"; do
            stress_run "$p" "$run"
        done
    done
    log "done in $((SECONDS - started)) s"
    echo
    report
    if ((FAILED)); then
        log "FAILED: at least one run had errors or no result (see above)"
        exit 1
    fi
}

main "$@"
