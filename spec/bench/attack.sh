#!/usr/bin/env bash
# attack.sh: attacks a real `warren serve` (and a `warren -R` client) on loopback and checks that
# the relay stays silent to probes and replays and available to real users under floods and
# slowloris. Prints the figures and one PASS/FAIL line per criterion; exits 1 on any FAIL.
set -euo pipefail

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# shellcheck source=lib.sh
source "$REPO_DIR/spec/bench/lib.sh"

readonly PORT_LO=14000 PORT_HI=14999 # bench 17000-, stress 18000-, reverse 19000-, chaos 15000-, soak 16000-
readonly ALL_PHASES=(probes replays flood-one flood-many slowloris slowloris-r)
WORK="" SPAWNED="" PORT_NEXT=$PORT_LO FAILED=0 QUICK=0 ONLY=""
PIDS=()
WARREN_BIN=${WARREN_BIN:-} LOADGEN=""

usage() {
    cat <<EOF
usage: spec/bench/attack.sh [--quick] [--only LIST] [-h]

Starts warren serve (and for slowloris-r a warren -R client and an echo server) on 127.0.0.1 and
attacks it with wr_loadgen from loopback source addresses (127.0.0.0/8 only). Phases:
  probes       random bytes of random length (1-600) and connect-then-nothing, from spread source
               addresses: total bytes answered by the relay must be 0, and no session accepted
  replays      a real client's first message, recorded by a forwarder, sent again many times:
               0 bytes answered and 0 sessions accepted (relay stats handshakes_ok)
  flood-one    2,000 idle connections and a 5,000/s garbage flood from 127.0.0.2 while real
               handshakes come from 127.0.0.1 and from 127.0.0.2 itself (the NAT case):
               each source must have >= 95% complete within 1 s
  flood-many   the same from 127.0.0.10-127.0.0.250; real handshakes from 127.0.0.1 and 127.0.0.10
  slowloris    1,500 connections from 127.0.0.3 sending one byte every 3 s to the relay port:
               real handshakes from 127.0.0.1 >= 95% within 1 s; relay fds reported
  slowloris-r  1,100 users holding a -R outer port open without sending: real users (pingpong
               through the same port) get through with no error; relay, client and echo fds reported

options:
  --quick      the short version for CI (fewer probes and replays, 5 s phases; well under 60 s;
               with WARREN_SANITIZED=1 smaller still)
  --only LIST  comma-separated phases from: ${ALL_PHASES[*]} (default all)
  -h, --help   this text

warren and wr_loadgen: \$WARREN_BIN / \$WR_LOADGEN, else the newest build directory holding both.
Full run: about 4 minutes. Exit status: 0 all PASS, 1 any FAIL, 2 bad usage or missing tools.
EOF
}

log() { printf '[attack %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'attack.sh: %s\n' "$*" >&2; exit 2; }


# The sizes of the attack: the issue's figures, fewer and shorter with --quick, and smaller again
# under ASan, where warren runs several times slower.
set_scale() {
    PROBES=100000 REPLAYS=10000 IDLE=2000 RATE=5000 MEASURE=20 HS_RATE=20 SLOW=1500 RUSERS=1100
    if ((QUICK)); then PROBES=5000 REPLAYS=1000 MEASURE=5; fi
    if ((QUICK)) && [[ ${WARREN_SANITIZED:-0} == 1 ]]; then
        PROBES=1000 REPLAYS=300 RATE=1000 HS_RATE=10
    fi
}

# ---------------------------------------------------------------- processes

# start_relay NAME [ARGS...]: a fresh warren serve with the stats tap (RELAY_PORT, RELAY_PID,
# RELAY_STATS = its stats file).
start_relay() {
    local name=$1
    shift
    alloc_port RELAY_PORT
    RELAY_STATS=$WORK/$name.stats
    spawn "$name" env WR_STATS_FILE="$RELAY_STATS" "$WARREN_BIN" -e "$(relay_stats_tap)" \
        serve "127.0.0.1:$RELAY_PORT" --key-file "$WORK/key" "$@"
    RELAY_PID=$SPAWNED
    wait_listen "$RELAY_PORT" "$RELAY_PID" || die "relay did not start: $(tail -3 "$WORK/$name.log")"
    wait_until 5 test -s "$RELAY_STATS" || die "relay stats did not appear"
}

# start_forward NAME SRC: a forwarder to the relay whose connections come from SRC (FWD_PORT).
start_forward() {
    alloc_port FWD_PORT
    spawn "$1" "$LOADGEN" forward -l "127.0.0.1:$FWD_PORT" -t "127.0.0.1:$RELAY_PORT" -src "$2" "${@:3}"
    wait_listen "$FWD_PORT" "$SPAWNED" || die "forwarder did not start"
}

# relay_stat KEY: the newest value of one of the relay's stats.
relay_stat() {
    sleep 0.3 # one sample period, so the figure is the current one
    kv "$1" "$(last_stats "$RELAY_STATS")"
}

# limit_stats: the relay's counters about unauthenticated connections, refusals and drops (their
# names vary between versions of the relay).
limit_stats() {
    last_stats "$RELAY_STATS" | tr ' ' '\n' | grep -E '^[a-z_]*(unauth|refused|dropped)[a-z_]*=' | tr '\n' ' '
}

# The real handshakes: a Lua script for `warren run` that starts one session every 1/RATE s for
# SECONDS (each closed at once), and prints how many completed, how many within 1 s, and p50/p99.
write_handshake_script() {
    cat >"$WORK/handshakes.lua" <<'LUA'
local warren, core, keys, uv = require("warren"), require("warren.core"), require("warren.keys"), require("luv")
local host, port = arg[1]:match("^(.*):(%d+)$")
local key = assert(keys.resolve({ key_file = arg[2] }))
local seconds, rate = tonumber(arg[3]), tonumber(arg[4])
local times, failed, last_error, tasks = {}, 0, "", {}
for i = 1, math.floor(seconds * rate) do
  tasks[i] = warren.spawn(function()
    local t0 = uv.hrtime()
    local s, err = core.session_connect({ host = host, port = tonumber(port), key = key, timeout_ms = 5000 })
    if s then
      times[#times + 1] = (uv.hrtime() - t0) / 1e6
      s:close()
    else
      failed, last_error = failed + 1, tostring(err)
    end
  end)
  warren.sleep(1000 / rate)
end
for _, t in ipairs(tasks) do t:join() end
table.sort(times)
local within = 0
for _, ms in ipairs(times) do if ms <= 1000 then within = within + 1 end end
local function pct(p) return #times > 0 and times[math.max(1, math.ceil(p * #times))] or 0 end
print(string.format("handshakes attempts=%d ok=%d within_1s=%d failed=%d p50_ms=%.2f p99_ms=%.2f max_ms=%.2f",
  #tasks, #times, within, failed, pct(0.5), pct(0.99), times[#times] or 0))
if failed > 0 then io.stderr:write("last failure: ", last_error, "\n") end
LUA
}

# real_handshakes NAME PORT: starts the handshake script against 127.0.0.1:PORT in the background.
real_handshakes() {
    spawn "$1" "$WARREN_BIN" run "$WORK/handshakes.lua" "127.0.0.1:$2" "$WORK/key" "$MEASURE" "$HS_RATE"
}

# judge_handshakes NAME WHO: waits for a real_handshakes run and prints its figures and verdict.
judge_handshakes() {
    local line n ok
    wait_until $((MEASURE + 30)) grep -q '^handshakes ' "$WORK/$1.log" || true
    line=$(grep '^handshakes ' "$WORK/$1.log" || echo "handshakes attempts=NA")
    n=$(kv attempts "$line") ok=$(kv within_1s "$line")
    printf '  real handshakes from %s: %s of %s within 1 s, %s failed, p50 %s ms, p99 %s ms, max %s ms\n' \
        "$2" "$ok" "$n" "$(kv failed "$line")" "$(kv p50_ms "$line")" "$(kv p99_ms "$line")" "$(kv max_ms "$line")"
    grep -h '^last failure' "$WORK/$1.log" | sed 's/^/    /' || true
    verdict "$(pass_if "$n > 0 && $ok >= 0.95 * $n")" "$3: >= 95% of real handshakes from $2 within 1 s" \
        "$(awk -v a="$ok" -v b="$n" 'BEGIN { if (b + 0 > 0) printf "%.1f%%", 100 * a / b; else print "n/a" }')"
}

# ---------------------------------------------------------------- phases

phase_probes() {
    local line before_ok
    echo "## probes: $PROBES connections of random bytes (1-600) or nothing, from 127.1.0.0/16"
    start_relay relay-probes
    before_ok=$(relay_stat handshakes_ok)
    "$LOADGEN" probe -t "127.0.0.1:$RELAY_PORT" -probes "$PROBES" -c 400 -wait 0.1 \
        -src 127.1.0.1-127.1.255.254 >"$WORK/probe.out" 2>&1 || true
    line=$(grep '^probe ' "$WORK/probe.out" || echo "probe answered_bytes=NA")
    printf '  %s\n' "$line"
    printf '  relay: handshakes_failed=%s handshakes_ok=%s %s\n' "$(relay_stat handshakes_failed)" \
        "$(relay_stat handshakes_ok)" "$(limit_stats)"
    verdict "$(pass_if "$(kv answered_bytes "$line") == 0 && $(kv probes "$line") == $PROBES")" \
        "probes: 0 bytes answered by the relay" "$(kv answered_bytes "$line") bytes to $(kv probes "$line") probes"
    verdict "$(pass_if "$(relay_stat handshakes_ok) == $before_ok")" "probes: no session accepted" \
        "handshakes_ok $before_ok -> $(relay_stat handshakes_ok)"
    stop_process "$RELAY_PID"
}

phase_replays() {
    local line size before_ok after_ok fwd
    echo "## replays: a real client's first message sent $REPLAYS times, from 127.2.0.0/16"
    start_relay relay-replays
    start_forward recorder 127.0.0.1 -record "$WORK/msg1.bin"
    fwd=$SPAWNED
    # One real client through the recording forwarder: its first bytes are msg1.
    "$WARREN_BIN" bench handshake "127.0.0.1:$FWD_PORT" --key-file "$WORK/key" -d 1 -c 1 >"$WORK/recorded.out" 2>&1 || true
    stop_process "$fwd"
    size=$(stat -c %s "$WORK/msg1.bin" 2>/dev/null || echo 0)
    before_ok=$(relay_stat handshakes_ok)
    "$LOADGEN" probe -t "127.0.0.1:$RELAY_PORT" -payload "$WORK/msg1.bin" -probes "$REPLAYS" -c 200 \
        -wait 0.1 -src 127.2.0.1-127.2.255.254 >"$WORK/replay.out" 2>&1 || true
    after_ok=$(relay_stat handshakes_ok)
    line=$(grep '^probe ' "$WORK/replay.out" || echo "probe answered_bytes=NA")
    printf '  recorded msg1: %s bytes (%s)\n' "$size" "$(tr '\n' ' ' <"$WORK/recorded.out")"
    printf '  %s\n' "$line"
    printf '  relay: handshakes_ok %s -> %s, handshakes_failed=%s\n' "$before_ok" "$after_ok" \
        "$(relay_stat handshakes_failed)"
    verdict "$(pass_if "$size >= 130 && $size <= 1120")" "replays: a real msg1 was recorded" "$size bytes"
    verdict "$(pass_if "$(kv answered_bytes "$line") == 0 && $(kv probes "$line") == $REPLAYS")" \
        "replays: 0 bytes answered" "$(kv answered_bytes "$line") bytes to $(kv probes "$line") replays"
    verdict "$(pass_if "$after_ok == $before_ok")" "replays: 0 sessions accepted" \
        "$((after_ok - before_ok)) accepted"
    stop_process "$RELAY_PID"
}

# flood_phase NAME FLOOD_SRC NAT_SRC: idle connections and garbage from FLOOD_SRC; real handshakes
# from 127.0.0.1 and, through a forwarder, from NAT_SRC (one of the flood's addresses).
flood_phase() {
    local name=$1 src=$2 nat=$3 flood fds
    echo "## $name: $IDLE idle connections + $RATE/s garbage from $src; real handshakes from 127.0.0.1 and $nat"
    start_relay "relay-$name"
    start_forward "nat-$name" "$nat"
    spawn "flood-$name" "$LOADGEN" flood -t "127.0.0.1:$RELAY_PORT" -src "$src" -idle "$IDLE" \
        -rate "$RATE" -d $((MEASURE + 15)) -i 1
    flood=$SPAWNED
    wait_until 15 grep -q '^ready' "$WORK/flood-$name.log" || log "$name: flood not ready in 15 s"
    sleep 1 # the garbage is running
    real_handshakes "hs-$name-direct" "$RELAY_PORT"
    real_handshakes "hs-$name-nat" "$FWD_PORT"
    sleep $((MEASURE / 2))
    fds=$(proc_fds "$RELAY_PID")
    printf '  mid-phase: relay fds=%s, relay %s\n' "$fds" "$(limit_stats)"
    grep '^FLOOD:' "$WORK/flood-$name.log" | tail -1 | sed 's/^/  /'
    judge_handshakes "hs-$name-direct" 127.0.0.1 "$name"
    judge_handshakes "hs-$name-nat" "$nat (same address as the flood)" "$name"
    stop_process "$flood"
    grep '^flood ' "$WORK/flood-$name.log" | sed 's/^/  /' || true
    stop_process "$RELAY_PID"
}

phase_slowloris() {
    local flood
    echo "## slowloris: $SLOW connections from 127.0.0.3 each sending a byte every 3 s"
    start_relay relay-slowloris
    printf '  relay fds before: %s\n' "$(proc_fds "$RELAY_PID")"
    spawn flood-slowloris "$LOADGEN" flood -t "127.0.0.1:$RELAY_PORT" -src 127.0.0.3 -idle "$SLOW" \
        -drip 3 -d $((MEASURE + 20)) -i 1
    flood=$SPAWNED
    wait_until 15 grep -q '^ready' "$WORK/flood-slowloris.log" || log "slowloris: not ready in 15 s"
    sleep 1
    real_handshakes hs-slowloris "$RELAY_PORT"
    sleep $((MEASURE / 2))
    printf '  mid-phase: relay fds=%s, attacker %s\n' "$(proc_fds "$RELAY_PID")" \
        "$(grep '^FLOOD:' "$WORK/flood-slowloris.log" | tail -1 | grep -o 'idle_held=[0-9]*')"
    judge_handshakes hs-slowloris 127.0.0.1 slowloris
    stop_process "$flood"
    stop_process "$RELAY_PID"
}

phase_slowloris_r() {
    local outer echo_port echo_pid client flood out line base_r base_c
    echo "## slowloris-r: $RUSERS users holding a -R outer port without sending"
    alloc_port outer
    alloc_port echo_port
    start_relay relay-slowloris-r --ports "$outer-$outer" --outer-bind 127.0.0.1
    spawn echo-r "$LOADGEN" echo-server -l "127.0.0.1:$echo_port" -d 600
    echo_pid=$SPAWNED
    spawn client-r "$WARREN_BIN" -R "127.0.0.1:$outer:127.0.0.1:$echo_port" --name slow \
        "127.0.0.1:$RELAY_PORT" --key-file "$WORK/key"
    client=$SPAWNED
    wait_listen "$outer" "$client" || die "-R port $outer did not open: $(tail -3 "$WORK/client-r.log")"
    base_r=$(proc_fds "$RELAY_PID") base_c=$(proc_fds "$client")
    spawn flood-r "$LOADGEN" flood -t "127.0.0.1:$outer" -src 127.0.0.4 -idle "$RUSERS" -d $((MEASURE + 30))
    flood=$SPAWNED
    wait_until 15 grep -q '^ready' "$WORK/flood-r.log" || log "slowloris-r: not ready in 15 s"
    sleep 2
    printf '  fds: relay %s -> %s, -R client %s -> %s, echo server %s (held users: %s)\n' \
        "$base_r" "$(proc_fds "$RELAY_PID")" "$base_c" "$(proc_fds "$client")" "$(proc_fds "$echo_pid")" \
        "$(grep -o 'idle_held=[0-9]*' "$WORK/flood-r.log" | tail -1)"
    out=$("$LOADGEN" pingpong -t "127.0.0.1:$outer" -c 20 -s 64 -d "$MEASURE" -timeout 2 -q 2>&1 || true)
    line=$(grep '^pingpong' <<<"$out" || echo "pingpong errors=NA")
    printf '  real users: %s\n' "$line"
    verdict "$(pass_if "$(kv errors "$line") == 0 && $(kv round_trips "$line") > 0")" \
        "slowloris-r: real users get through a held -R port" \
        "$(kv round_trips "$line") round trips, $(kv errors "$line") errors, p99 $(kv p99_us "$line") us"
    stop_process "$flood"
    stop_process "$client"
    stop_process "$echo_pid"
    stop_process "$RELAY_PID"
}

# ---------------------------------------------------------------- main

main() {
    parse_phase_args "$@"
    find_tools
    set_scale
    nofile_at_least $((IDLE + SLOW + RUSERS + 4096))
    begin_work attack
    "$WARREN_BIN" keygen >"$WORK/key"
    write_handshake_script
    local started=$SECONDS
    printf '# warren attack%s\n\n' "$( ((QUICK)) && echo ' (--quick)')"
    printf '%s, %s CPUs, warren %s, commit %s. Loopback only; relay on 127.0.0.1 with default limits.\n\n' \
        "$(date -u +%Y-%m-%dT%H:%MZ)" "$(nproc)" "$WARREN_BIN" \
        "$(git -C "$REPO_DIR" log -1 --format=%h 2>/dev/null || echo '?')"
    if phase_selected probes; then phase_probes; fi
    if phase_selected replays; then phase_replays; fi
    if phase_selected flood-one; then flood_phase flood-one 127.0.0.2 127.0.0.2; fi
    if phase_selected flood-many; then flood_phase flood-many 127.0.0.10-127.0.0.250 127.0.0.10; fi
    if phase_selected slowloris; then phase_slowloris; fi
    if phase_selected slowloris-r; then phase_slowloris_r; fi
    echo
    log "done in $((SECONDS - started)) s"
    if ((FAILED)); then
        echo "attack: FAIL"
        exit 1
    fi
    echo "attack: PASS"
}

main "$@"
