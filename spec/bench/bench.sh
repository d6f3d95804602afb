#!/usr/bin/env bash
# bench.sh: warren's benchmark. Measures, in one run on loopback, a direct connection and the
# tunnels people use today (haproxy, socat, ssh -L, shadowsocks-libev, stunnel) next to warren's -L
# forward tunnel over each carrier (raw, TLS, WebSocket, WebSocket over TLS), and prints one
# Markdown report with ratios against ssh -L, haproxy and warren's raw carrier.
# It starts and stops everything it measures; run it with --help for the details.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/../.." && pwd)
readonly SCRIPT_DIR REPO_DIR
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$SCRIPT_DIR/lib.sh"
readonly ALL_PEERS=(direct haproxy socat ssh ss stunnel warren warren-tls warren-ws warren-wss warren-http
    warren-http-poll warren-http-proxy)
# The HTTP carrier's paths, measured for one stream each way and latency only (see --help).
readonly HTTP_PATHS=(warren-http warren-http-poll warren-http-proxy)
readonly PORT_LO=17000 PORT_HI=17999
readonly HOLD_CONNS=2000

RUNS=3
QUICK=0
ONLY=""
OUT=""
LOADGEN=${WR_LOADGEN:-}
WORK=""
PORT_NEXT=0
PIDS=()      # every process started, for cleanup
PEER_PIDS=() # processes of the tunnel being measured (their trees are summed for RSS)
PEER_PORT="" # where clients connect to reach the target through the tunnel
SSHD_PID="" SSHD_PORT="" ECHO_PORT="" ECHO_PID="" IPERF_PORT="" IPERF_PID="" RELAY_PORT=""
WARREN_KEY="" WARREN_REASON=""
declare -A RES=()   # "peer:metric" -> space-separated values, one per run
declare -A LABEL=([direct]="direct" [haproxy]="haproxy" [socat]="socat" [ssh]="ssh -L"
    [ss]="ss-tunnel" [stunnel]="stunnel (TLS)" [warren]="warren -L" [warren-tls]="warren -L tls://"
    [warren-ws]="warren -L ws://" [warren-wss]="warren -L wss://" [warren-http]="warren -L http://"
    [warren-http-poll]="warren -L http://, long polls" [warren-http-proxy]="warren -L http:// via tinyproxy")

usage() {
    cat <<EOF
usage: spec/bench/bench.sh [--runs N] [--quick] [--only PEER,...] [--out FILE.md] [--loadgen PATH]

Measures on 127.0.0.1, through each tunnel, to targets this script starts itself:
  - iperf3 throughput, 1 stream and 8 streams (-P 8)
  - 1-byte ping-pong latency p50/p99 on one connection, and the latency added over direct
  - new connections per second (16 and 64 dialers, each connection does a 1-byte echo, then
    closes)
  - RSS per idle tunnelled connection, ${HOLD_CONNS} held (sum over the tunnel's processes)
  - handshakes per second (warren: session handshakes with the relay on one core;
    ssh: full 'ssh host true' connection setups; others n/a)

peers: direct, haproxy (mode tcp), socat, ssh (ssh -L, aes128-gcm, own sshd with throwaway keys),
       ss (shadowsocks-libev ss-tunnel + ss-server, chacha20-ietf-poly1305), stunnel (a client
       and a server stunnel4, TLS with a throwaway EC certificate), warren (the raw carrier),
       warren-tls, warren-ws, warren-wss, warren-http (the same -L over tls://, ws://, wss:// and
       http:// to a relay with --tls and a pinned self-signed certificate; when warren is
       available), warren-http-poll (http:// through spec/helpers/fault_proxy.js in buffer mode,
       which holds every answer until it is whole, so the client long-polls; needs node) and
       warren-http-proxy (http:// through tinyproxy, which gets the requests in absolute form and
       is refused CONNECT). For these two, and for warren-http, the HTTP carrier section reports
       one stream up (iperf3) and down (iperf3 -R) in MiB/s and the added p50 latency; the two
       paths are not measured for RSS, conn/s or 8 streams.

options:
  --runs N        runs per peer; the report shows the median (default 3)
  --quick         1 run, shorter measurements (about 2 minutes)
  --only LIST     comma-separated peers to measure; direct is always measured (baseline)
  --out FILE.md   also write the report to FILE.md
  --loadgen PATH  wr_loadgen binary (default: \$WR_LOADGEN, then build*/spec/bench/wr_loadgen)

warren's row is enabled when WARREN_BIN (default: build*/warren, then warren on PATH) runs a working
forward tunnel: 'warren serve 127.0.0.1:R -k KEY' plus 'warren -L 127.0.0.1:L:127.0.0.1:T
127.0.0.1:R -k KEY' must carry an echo round trip. WARREN_FORWARD=0 skips it; WARREN_FORWARD=1
skips the probe. Handshakes/s for warren come from WARREN_HANDSHAKE_CMD if set (run with RELAY, KEY,
SECS in the environment; must print handshakes_per_s=N), else from
'\$WARREN_BIN bench handshake 127.0.0.1:R -k KEY -d SECS' if that prints handshakes_per_s=N.

Ports come from ${PORT_LO}-${PORT_HI}. Needs root for the private sshd (ssh row), and
iperf3, socat, haproxy, openssh-server/client, shadowsocks-libev, jq.
EOF
}

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'bench.sh: %s\n' "$*" >&2; exit 2; }

# ---------------------------------------------------------------- arguments and prerequisites

parse_args() {
    while (($#)); do
        case "$1" in
            --runs) RUNS=${2:?--runs needs N}; shift 2 ;;
            --quick) QUICK=1; shift ;;
            --only) ONLY=${2:?--only needs a list}; shift 2 ;;
            --out) OUT=${2:?--out needs a file}; shift 2 ;;
            --loadgen) LOADGEN=${2:?--loadgen needs a path}; shift 2 ;;
            -h | --help) usage; exit 0 ;;
            *) usage >&2; die "unknown argument: $1" ;;
        esac
    done
    [[ $RUNS =~ ^[1-9][0-9]?$ ]] || die "--runs wants 1..99, got '$RUNS'"
    if ((QUICK)); then RUNS=1; fi
    local p
    SELECTED=(direct)
    if [[ -z $ONLY ]]; then
        SELECTED=("${ALL_PEERS[@]}")
    else
        for p in ${ONLY//,/ }; do
            [[ " ${ALL_PEERS[*]} " == *" $p "* ]] || die "unknown peer '$p' (known: ${ALL_PEERS[*]})"
            [[ " ${SELECTED[*]} " == *" $p "* ]] || SELECTED+=("$p")
        done
    fi
}

selected() { [[ " ${SELECTED[*]} " == *" $1 "* ]]; }

find_loadgen() {
    local c
    if [[ -z $LOADGEN ]]; then
        for c in "$REPO_DIR"/build*/spec/bench/wr_loadgen; do
            [[ -x $c ]] && { LOADGEN=$c; break; }
        done
    fi
    [[ -n $LOADGEN && -x $LOADGEN ]] || die "wr_loadgen not found; build it:
  cmake -S $REPO_DIR -B build -G Ninja && cmake --build build --target wr_loadgen
or pass --loadgen PATH / set WR_LOADGEN"
}

check_prereqs() {
    local missing=() t
    need() { command -v "$1" >/dev/null 2>&1 || missing+=("$1 ($2)"); }
    need iperf3 iperf3
    need jq jq
    need awk gawk/mawk
    need timeout coreutils
    selected haproxy && need haproxy haproxy
    selected socat && need socat socat
    if selected ssh; then
        need ssh openssh-client
        need ssh-keygen openssh-client
        need sftp openssh-client
        [[ -x /usr/sbin/sshd ]] || missing+=("/usr/sbin/sshd (openssh-server)")
        ((EUID == 0)) || die "the ssh row runs a private sshd with root login and needs root; use --only without ssh"
    fi
    if selected ss; then
        need ss-server shadowsocks-libev
        need ss-tunnel shadowsocks-libev
    fi
    selected warren-http-poll && need node nodejs
    selected warren-http-proxy && need tinyproxy tinyproxy
    if selected stunnel; then
        need stunnel stunnel4
        need openssl openssl
    fi
    if ((${#missing[@]})); then
        for t in "${missing[@]}"; do printf 'bench.sh: missing: %s\n' "$t" >&2; done
        die "install the packages above (Debian: apt-get install iperf3 jq socat haproxy openssh-server openssh-client shadowsocks-libev)"
    fi
    find_loadgen
}

raise_nofile() {
    # Every held connection costs each tunnel process two descriptors, and socat/ssh/ss have no
    # option to raise the limit themselves.
    local hard
    hard=$(ulimit -Hn)
    [[ $hard == unlimited ]] && hard=65536
    ((hard > 65536)) && hard=65536
    ulimit -n "$hard"
    ((hard >= 2 * HOLD_CONNS + 256)) ||
        die "ulimit -n hard limit is $hard; holding $HOLD_CONNS connections needs at least $((2 * HOLD_CONNS + 256))"
}

# ---------------------------------------------------------------- processes and ports

rss_kb() {
    # Sum of VmRSS over the given roots and all their descendants.
    local p pids=""
    for p in "$@"; do pids+=" $p $(descendants "$p")"; done
    for p in $pids; do
        awk '/^VmRSS:/ { print $2 }' "/proc/$p/status" 2>/dev/null || true
    done | awk '{ s += $1 } END { print s + 0 }'
}

# ---------------------------------------------------------------- targets and shared daemons

start_targets() {
    alloc_port ECHO_PORT
    spawn echo "$LOADGEN" echo-server -l "127.0.0.1:$ECHO_PORT" -d 3600
    ECHO_PID=$SPAWNED
    wait_listen "$ECHO_PORT" "$SPAWNED" || die "echo server did not start: $(tail -3 "$WORK/echo.log")"
    start_iperf
}

# ---------------------------------------------------------------- peers

# start_peer PEER TARGET_PORT: sets PEER_PORT and PEER_PIDS; returns non-zero if it fails.
start_peer() {
    local peer=$1 target=$2 lp rp
    PEER_PIDS=()
    if [[ $peer == direct ]]; then
        PEER_PORT=$target
        return 0
    fi
    alloc_port lp
    PEER_PORT=$lp
    case $peer in
        haproxy)
            cat >"$WORK/haproxy.cfg" <<EOF
global
    maxconn 5000
defaults
    mode tcp
    timeout connect 5s
    timeout client 300s
    timeout server 300s
frontend fe
    bind 127.0.0.1:$lp
    default_backend be
backend be
    server target 127.0.0.1:$target
EOF
            spawn haproxy haproxy -db -f "$WORK/haproxy.cfg"
            PEER_PIDS=("$SPAWNED")
            ;;
        socat)
            spawn socat socat "TCP-LISTEN:$lp,bind=127.0.0.1,fork,reuseaddr,backlog=4096" \
                "TCP:127.0.0.1:$target"
            PEER_PIDS=("$SPAWNED")
            ;;
        ssh)
            spawn ssh ssh "${SSH_OPTS[@]}" -p "$SSHD_PORT" -N -o ExitOnForwardFailure=yes \
                -L "127.0.0.1:$lp:127.0.0.1:$target" root@127.0.0.1
            # The tunnel is the client plus the sshd session processes below the listener.
            PEER_PIDS=("$SPAWNED" "$SSHD_PID")
            ;;
        ss)
            alloc_port rp
            spawn ss-server ss-server -s 127.0.0.1 -p "$rp" -k bench-ss-pass \
                -m chacha20-ietf-poly1305 -t 300
            PEER_PIDS=("$SPAWNED")
            wait_listen "$rp" "$SPAWNED" || return 1
            spawn ss-tunnel ss-tunnel -s 127.0.0.1 -p "$rp" -b 127.0.0.1 -l "$lp" -k bench-ss-pass \
                -m chacha20-ietf-poly1305 -t 300 -L "127.0.0.1:$target"
            PEER_PIDS+=("$SPAWNED")
            ;;
        stunnel)
            alloc_port rp
            stunnel_conf server "$rp" "127.0.0.1:$target" >"$WORK/stunnel-server.conf"
            spawn stunnel-server stunnel "$WORK/stunnel-server.conf"
            PEER_PIDS=("$SPAWNED")
            wait_listen "$rp" "$SPAWNED" || return 1
            stunnel_conf client "$lp" "127.0.0.1:$rp" >"$WORK/stunnel-client.conf"
            spawn stunnel-client stunnel "$WORK/stunnel-client.conf"
            PEER_PIDS+=("$SPAWNED")
            ;;
        warren)
            alloc_port RELAY_PORT
            spawn warren-relay "$WARREN_BIN" serve "127.0.0.1:$RELAY_PORT" -k "$WARREN_KEY"
            PEER_PIDS=("$SPAWNED")
            wait_listen "$RELAY_PORT" "$SPAWNED" || return 1
            spawn warren-client "$WARREN_BIN" -L "127.0.0.1:$lp:127.0.0.1:$target" \
                "127.0.0.1:$RELAY_PORT" -k "$WARREN_KEY"
            PEER_PIDS+=("$SPAWNED")
            ;;
        warren-http-poll | warren-http-proxy)
            start_http_path "$peer" "$lp" "$target" || return 1
            ;;
        warren-*)
            local pin scheme=${peer#warren-}
            alloc_port RELAY_PORT
            spawn warren-relay "$WARREN_BIN" serve "127.0.0.1:$RELAY_PORT" -k "$WARREN_KEY" --tls \
                --self-signed "$WORK/relay-tls.pem"
            PEER_PIDS=("$SPAWNED")
            wait_listen "$RELAY_PORT" "$SPAWNED" || return 1
            pin=$(grep -o 'sha256:[0-9a-f]*' "$WORK/warren-relay.log" | head -1)
            spawn warren-client "$WARREN_BIN" -L "127.0.0.1:$lp:127.0.0.1:$target" \
                "$scheme://127.0.0.1:$RELAY_PORT" -k "$WARREN_KEY" --pin "$pin"
            PEER_PIDS+=("$SPAWNED")
            ;;
    esac
    wait_listen "$lp" "${PEER_PIDS[-1]}"
}

# start_http_path PEER LISTEN_PORT TARGET_PORT: a relay, the HTTP carrier's client, and between
# them a buffering front (fault_proxy.js buffer) or a proxy that refuses CONNECT (tinyproxy).
start_http_path() {
    local peer=$1 lp=$2 target=$3 via port i
    alloc_port RELAY_PORT
    spawn warren-relay "$WARREN_BIN" serve "127.0.0.1:$RELAY_PORT" -k "$WARREN_KEY"
    PEER_PIDS=("$SPAWNED")
    wait_listen "$RELAY_PORT" "$SPAWNED" || return 1
    if [[ $peer == warren-http-poll ]]; then
        spawn fault-proxy node "$REPO_DIR/spec/helpers/fault_proxy.js" "$RELAY_PORT" 1 buffer
        PEER_PIDS+=("$SPAWNED")
        for ((i = 0; i < 100; i++)); do
            port=$(sed -n 's/^port \([0-9]*\)$/\1/p' "$WORK/fault-proxy.log" | head -1)
            [[ -n $port ]] && break
            sleep 0.05
        done
        [[ -n $port ]] || return 1
        spawn warren-client "$WARREN_BIN" -L "127.0.0.1:$lp:127.0.0.1:$target" \
            "http://127.0.0.1:$port" -k "$WARREN_KEY"
    else
        alloc_port port
        alloc_port via # CONNECT is allowed only to this port, where nothing listens
        printf 'Port %s\nListen 127.0.0.1\nTimeout 600\nMaxClients 4096\nAllow 127.0.0.1\nConnectPort %s\nLogLevel Error\n' \
            "$port" "$via" >"$WORK/tinyproxy.conf"
        spawn tinyproxy tinyproxy -d -c "$WORK/tinyproxy.conf"
        PEER_PIDS+=("$SPAWNED")
        wait_listen "$port" "$SPAWNED" || return 1
        spawn warren-client "$WARREN_BIN" -L "127.0.0.1:$lp:127.0.0.1:$target" \
            "http://127.0.0.1:$RELAY_PORT" --proxy "http://127.0.0.1:$port" -k "$WARREN_KEY"
    fi
    PEER_PIDS+=("$SPAWNED")
}

# stunnel_conf client|server ACCEPT_PORT CONNECT: one foreground stunnel4 service.
stunnel_conf() {
    [[ -s $WORK/stunnel.pem ]] ||
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
            -subj /CN=localhost -keyout "$WORK/stunnel.pem" -out "$WORK/stunnel.crt" 2>/dev/null
    [[ -s $WORK/stunnel.crt ]] && cat "$WORK/stunnel.crt" >>"$WORK/stunnel.pem" && rm "$WORK/stunnel.crt"
    printf 'foreground = yes\npid =\n[tunnel]\n'
    if [[ $1 == client ]]; then printf 'client = yes\n'; else printf 'cert = %s\n' "$WORK/stunnel.pem"; fi
    printf 'accept = 127.0.0.1:%s\nconnect = %s\n' "$2" "$3"
}

stop_peer() {
    local p
    for p in "${PEER_PIDS[@]}"; do
        [[ $p == "$SSHD_PID" ]] || kill_tree "$p"
    done
    wait_sshd_sessions # the next RSS baseline must not see them
    PEER_PIDS=()
}

peer_log_tail() {
    log_tails 2 haproxy socat ssh ss-server ss-tunnel stunnel-server stunnel-client warren-relay \
        warren-client sshd fault-proxy tinyproxy
}

# warren counts only once a real echo has gone through its -L tunnel.
detect_warren() {
    if [[ ${WARREN_FORWARD:-auto} == 0 ]]; then
        WARREN_REASON="disabled (WARREN_FORWARD=0)"
        return 1
    fi
    if ! locate_warren; then
        WARREN_REASON="no warren binary (set WARREN_BIN)"
        return 1
    fi
    WARREN_KEY=${WARREN_KEY:-$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')}
    [[ ${WARREN_FORWARD:-auto} == 1 ]] && return 0
    local ok=0
    if start_peer warren "$ECHO_PORT" &&
        timeout 10 "$LOADGEN" pingpong -t "127.0.0.1:$PEER_PORT" -n 3 -d 5 -timeout 3 -q >/dev/null 2>&1; then
        ok=1
    fi
    stop_peer
    if ((!ok)); then
        WARREN_REASON="$WARREN_BIN has no working -L forward tunnel yet"
        return 1
    fi
}

# ---------------------------------------------------------------- measurements

record() { RES[$1:$2]+="${3:-NA} "; }

measure_hold() {
    local peer=$1 before after out hp i held
    if [[ $peer == direct ]]; then record "$peer" rss NA; return; fi
    before=$(rss_kb "${PEER_PIDS[@]}")
    out=$WORK/hold.out
    : >"$out"
    "$LOADGEN" hold -t "127.0.0.1:$PEER_PORT" -c "$HOLD_CONNS" -d 120 -timeout 20 -q >"$out" 2>&1 &
    hp=$!
    PIDS+=("$hp")
    for ((i = 0; i < 1200; i++)); do
        grep -q '^ready' "$out" && break
        kill -0 "$hp" 2>/dev/null || break
        sleep 0.1
    done
    sleep 0.5 # let the tunnel finish its own bookkeeping for the last connections
    after=$(rss_kb "${PEER_PIDS[@]}")
    held=$(kv held "$(grep '^ready' "$out" || true)")
    kill -TERM "$hp" 2>/dev/null || true
    wait "$hp" 2>/dev/null || true
    if [[ $held != "$HOLD_CONNS" ]]; then
        log "  $peer: only ${held:-0} of $HOLD_CONNS connections held: $(tail -2 "$out" | tr '\n' ' ')"
        record "$peer" rss NA
        return
    fi
    record "$peer" rss "$(awk -v a="$after" -v b="$before" -v n="$held" 'BEGIN { printf "%.0f", (a - b) * 1024 / n }')"
    log "  $peer: RSS ${before} -> ${after} KiB with $held idle connections"
}

# pin_all CPUS: set the affinity of the echo server and of the tunnel's process trees (all threads).
pin_all() {
    local p
    command -v taskset >/dev/null || return 0
    for p in "$ECHO_PID" "${PEER_PIDS[@]}"; do
        for q in $p $(descendants "$p"); do taskset -a -p -c "$1" "$q" >/dev/null 2>&1 || true; done
    done
}

# Latency is measured twice. On this kind of VM a wake-up across cores costs ~50 µs while one on the
# same core costs ~1 µs, so free-running figures jump between two modes depending on where the
# scheduler put each process. With everything on one core the figure is the tunnel's own work per
# round trip and is stable run to run; the free-running one is kept as a second column.
# The latency of a pingpong result line; NA when no round trip completed (a figure of 0 is not one).
rtt_us() { [[ $(kv round_trips "$2") =~ ^[1-9] ]] && kv "$1" "$2" || echo NA; }

measure_pingpong() {
    local peer=$1 out pin=()
    if command -v taskset >/dev/null; then
        pin=(taskset -c 0)
        pin_all 0
        out=$(timeout $((PP_SECS + 30)) "${pin[@]}" "$LOADGEN" pingpong -t "127.0.0.1:$PEER_PORT" -c 1 -d "$PP_SECS" -q 2>&1 | tail -1) || true
        pin_all "0-$(($(nproc) - 1))"
        record "$peer" p50 "$(rtt_us p50_us "$out")"
        record "$peer" p99 "$(rtt_us p99_us "$out")"
        log "  $peer (one core): $out"
    fi
    out=$(timeout $((PP_SECS + 30)) "$LOADGEN" pingpong -t "127.0.0.1:$PEER_PORT" -c 1 -d "$PP_SECS" -q 2>&1 | tail -1) || true
    record "$peer" p50f "$(rtt_us p50_us "$out")"
    record "$peer" p99f "$(rtt_us p99_us "$out")"
    ((${#pin[@]})) || { record "$peer" p50 "$(rtt_us p50_us "$out")"; record "$peer" p99 "$(rtt_us p99_us "$out")"; }
    log "  $peer (free): $out"
}

# measure_connrate PEER: 16 dialers (recorded as cps, cfail) and 64 (cps64, cfail64).
measure_connrate() {
    local peer=$1 out dialers suffix
    for dialers in 16 64; do
        suffix=""
        ((dialers == 16)) || suffix=$dialers
        out=$(timeout $((CR_SECS + 30)) "$LOADGEN" connrate -t "127.0.0.1:$PEER_PORT" -c "$dialers" -d "$CR_SECS" -timeout 5 -q 2>&1 | tail -1) || true
        record "$peer" "cps$suffix" "$(kv conns_per_s "$out")"
        record "$peer" "cfail$suffix" "$(kv failures "$out")"
        log "  $peer: $out"
    done
}

# measure_iperf PEER STREAMS [-R]: with -R the target sends (the tunnel's downstream), recorded as
# thrSTREAMSd.
measure_iperf() {
    local peer=$1 streams=$2 reverse=${3:-} json gbps
    json=$WORK/iperf.json
    if timeout $((IPERF_SECS + IPERF_OMIT + 20)) iperf3 -c 127.0.0.1 -p "$PEER_PORT" -t "$IPERF_SECS" \
        -O "$IPERF_OMIT" -P "$streams" ${reverse:+-R} --connect-timeout 3000 -J >"$json" 2>>"$WORK/iperf3-client.log"; then
        gbps=$(jq -r '.end.sum_received.bits_per_second / 1e9' "$json" 2>/dev/null || echo NA)
    else
        gbps=NA
        log "  $peer: iperf3 -P $streams failed: $(jq -r '.error // empty' "$json" 2>/dev/null | head -1)"
        start_iperf # a failed test can leave the server stuck
    fi
    record "$peer" "thr$streams${reverse:+d}" "$(awk -v g="$gbps" 'BEGIN { if (g == "NA") print "NA"; else printf "%.2f", g }')"
    log "  $peer: iperf3 -P $streams $reverse: $gbps Gbit/s"
}

measure_handshakes() {
    local peer=$1 rate=NA
    case $peer in
        warren) rate=$(warren_handshakes) ;;
        ssh) rate=$(ssh_handshakes) ;;
    esac
    record "$peer" hs "${rate:-NA}"
    [[ $peer == warren || $peer == ssh ]] && log "  $peer: handshakes/s $rate"
    return 0
}

# Hook for warren: the relay is pinned to one core while a client on the other core handshakes as
# fast as it can, so the figure is per core.
warren_handshakes() {
    local out relay=${PEER_PIDS[0]}
    if command -v taskset >/dev/null; then taskset -a -p -c 0 "$relay" >/dev/null 2>&1 || true; fi
    if [[ -n ${WARREN_HANDSHAKE_CMD:-} ]]; then
        out=$(RELAY=127.0.0.1:$RELAY_PORT KEY=$WARREN_KEY SECS=$HS_SECS \
            timeout $((HS_SECS + 20)) bash -c "$WARREN_HANDSHAKE_CMD" 2>&1) || true
    else
        out=$(timeout $((HS_SECS + 20)) taskset -c 1 "$WARREN_BIN" bench handshake \
            "127.0.0.1:$RELAY_PORT" -k "$WARREN_KEY" -d "$HS_SECS" 2>&1) || true
    fi
    if command -v taskset >/dev/null; then
        taskset -a -p -c 0-"$(($(nproc) - 1))" "$relay" >/dev/null 2>&1 || true
    fi
    out=$(kv handshakes_per_s "$(tr '\n' ' ' <<<"$out")")
    echo "${out:-NA}"
}

# ssh: complete connection setups per second (X25519 key exchange, public-key auth, a session
# opening sshd's in-process sftp server, which starts no shell), from 4 parallel clients.
ssh_handshakes() {
    local w start end total=0 f jobs=()
    start=$(date +%s.%N)
    end=$(awk -v s="$start" -v d="$HS_SECS" 'BEGIN { printf "%.3f", s + d }')
    for w in 1 2 3 4; do
        (
            n=0
            while awk -v e="$end" -v now="$(date +%s.%N)" 'BEGIN { exit !(now < e) }'; do
                timeout 10 sftp "${SSH_OPTS[@]}" -P "$SSHD_PORT" -b /dev/null root@127.0.0.1 \
                    </dev/null >/dev/null 2>&1 &&
                    n=$((n + 1))
            done
            echo "$n" >"$WORK/sshhs.$w"
        ) &
        jobs+=($!)
    done
    wait "${jobs[@]}" 2>/dev/null || true
    for w in 1 2 3 4; do
        f=$WORK/sshhs.$w
        [[ -s $f ]] && total=$((total + $(cat "$f")))
        rm -f "$f"
    done
    awk -v n="$total" -v s="$start" -v now="$(date +%s.%N)" 'BEGIN { printf "%.1f", n / (now - s) }'
}

bench_peer() {
    local peer=$1 run=$2
    log "run $run/$RUNS: $peer"
    # Phase 1: tunnel to the echo server: memory, latency, connection rate, handshakes.
    if ! start_peer "$peer" "$ECHO_PORT" ||
        ! timeout 10 "$LOADGEN" pingpong -t "127.0.0.1:$PEER_PORT" -c 4 -n 200 -d 8 -q >/dev/null 2>&1; then
        log "  $peer did not start or does not carry traffic; its row is empty this run"
        peer_log_tail
        stop_peer
        for m in rss p50 p99 p50f p99f cps cfail thr1 thr8 thr1d hs; do record "$peer" "$m" NA; done
        return 0
    fi
    local http_path=0
    [[ $peer == warren-http-* ]] && http_path=1
    if ((http_path)); then
        for m in rss cps cfail hs; do record "$peer" "$m" NA; done
    else
        measure_hold "$peer"
    fi
    measure_pingpong "$peer"
    if ((!http_path)); then
        measure_connrate "$peer"
        measure_handshakes "$peer"
    fi
    stop_peer
    # Phase 2: tunnel to the iperf3 server: throughput (the HTTP carrier's paths: both ways).
    if start_peer "$peer" "$IPERF_PORT"; then
        measure_iperf "$peer" 1
        if ((http_path)); then record "$peer" thr8 NA; else measure_iperf "$peer" 8; fi
        if [[ " ${HTTP_PATHS[*]} " == *" $peer "* ]]; then measure_iperf "$peer" 1 -R; fi
    else
        log "  $peer did not start for iperf3"
        record "$peer" thr1 NA
        record "$peer" thr8 NA
        record "$peer" thr1d NA
    fi
    stop_peer
}

# ---------------------------------------------------------------- report

# Added latency is paired per run (peer and direct measured minutes apart), then the median.
compute_added() {
    local peer=$1 m=$2 d p i out=""
    read -ra d <<<"${RES[direct:$m]:-}"
    read -ra p <<<"${RES[$peer:$m]:-}"
    for ((i = 0; i < ${#p[@]}; i++)); do
        if [[ ${p[i]} == NA || ${d[i]:-NA} == NA ]]; then out+="NA "; else
            out+="$(awk -v a="${p[i]}" -v b="${d[i]}" 'BEGIN { printf "%.1f", a - b }') "
        fi
    done
    RES[$peer:add${m#p}]=$out
}

mib() { # mib GBITS: MiB/s, one decimal
    awk -v g="$1" 'BEGIN { if (g == "NA" || g == "") print "n/a"; else printf "%.1f", g * 1e9 / 8 / 1048576 }'
}

bar() { # bar VALUE OP LIMIT: PASS/FAIL/n/a
    awk -v v="$1" -v op="$2" -v l="$3" 'BEGIN {
        if (v == "NA" || l == "NA" || v == "" || l == "") { print "n/a"; exit }
        ok = (op == ">=") ? (v + 0 >= l + 0) : (v + 0 <= l + 0); print ok ? "PASS" : "FAIL" }'
}

peer_rows() {
    local p
    for p in "${ALL_PEERS[@]}"; do
        if selected "$p"; then echo "$p"; fi
    done
}

report() {
    local p m ref cps cf rss hs rssk
    for p in $(peer_rows); do
        compute_added "$p" p50
        compute_added "$p" p99
        compute_added "$p" p50f
    done
    printf '# warren benchmark\n\n'
    printf '%s, %s CPUs, %s. Median of %s run(s)%s. Loopback only; all peers measured in the same run.\n\n' \
        "$(date -u +%Y-%m-%dT%H:%MZ)" "$(nproc)" "$(uname -sr)" "$RUNS" "$( ((QUICK)) && echo ', --quick' || true)"
    printf 'Latency columns: one core (all processes pinned, see below); "2 cores": free-running.\n\n'
    printf '| peer | 1 stream Gbit/s | 8 streams Gbit/s | p50 µs | p99 µs | added p50 µs | added p99 µs | added p50 µs, 2 cores | conn/s | conn/s, 64 dialers | RSS / idle conn | handshakes/s |\n'
    printf '|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n'
    for p in $(peer_rows); do
        if [[ $p == warren* && -n $WARREN_REASON ]]; then
            printf '| %s | not available | | | | | | | | | | |\n' "${LABEL[$p]}"
            continue
        fi
        cps=$(fmt "$(med "$p" cps)" 0)
        cf=$(med "$p" cfail)
        [[ $cf != NA && $cf != 0 ]] && cps+=" (${cf} failed)"
        cps64=$(fmt "$(med "$p" cps64)" 0)
        cf=$(med "$p" cfail64)
        [[ $cf != NA && $cf != 0 ]] && cps64+=" (${cf} failed)"
        rss=$(med "$p" rss)
        rssk=$(awk -v r="$rss" 'BEGIN { if (r == "NA") print "n/a"; else printf "%.2f KiB\n", r / 1024 }')
        hs=$(fmt "$(med "$p" hs)" 0)
        printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "${LABEL[$p]}" \
            "$(fmt "$(med "$p" thr1)" 2)" "$(fmt "$(med "$p" thr8)" 2)" \
            "$(fmt "$(med "$p" p50)" 1)" "$(fmt "$(med "$p" p99)" 1)" \
            "$( [[ $p == direct ]] && echo — || fmt "$(med "$p" add50)" 1)" \
            "$( [[ $p == direct ]] && echo — || fmt "$(med "$p" add99)" 1)" \
            "$( [[ $p == direct ]] && echo "($(fmt "$(med "$p" p50f)" 1) abs.)" || fmt "$(med "$p" add50f)" 1)" \
            "$cps" "$cps64" "$rssk" "$hs"
    done

    for ref in ssh haproxy warren; do
        selected "$ref" || continue
        [[ $ref == warren && -n $WARREN_REASON ]] && continue
        printf '\n### Ratios vs %s\n\n' "${LABEL[$ref]}"
        printf 'Throughput and conn/s: higher is better; added latency and RSS: lower is better.\n\n'
        printf '| peer | 1 stream | 8 streams | added p50 | added p99 | added p50, 2 cores | conn/s | conn/s, 64 dialers | RSS / idle conn |\n'
        printf '|---|--:|--:|--:|--:|--:|--:|--:|--:|\n'
        for p in $(peer_rows); do
            [[ $p == direct || $p == "$ref" ]] && continue
            [[ $p == warren* && -n $WARREN_REASON ]] && { printf '| %s | not available | | | | | | | |\n' "${LABEL[$p]}"; continue; }
            printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "${LABEL[$p]}" \
                "$(med_ratio "$p" "$ref" thr1)" \
                "$(med_ratio "$p" "$ref" thr8)" \
                "$(med_ratio "$p" "$ref" add50)" \
                "$(med_ratio "$p" "$ref" add99)" \
                "$(med_ratio "$p" "$ref" add50f)" \
                "$(med_ratio "$p" "$ref" cps)" \
                "$(med_ratio "$p" "$ref" cps64)" \
                "$(med_ratio "$p" "$ref" rss)"
        done
    done

    printf '\n### Targets\n\n'
    printf '| peer | 1 stream ≥ 1.15× ssh -L | 8 streams ≥ ssh -L | 8 streams ≥ own 1 stream | conn/s ≥ haproxy | conn/s, 64 dialers ≥ haproxy | added p50 ≤ ssh -L | RSS ≤ 4 KiB / idle conn | handshakes ≥ 2,000/s/core |\n'
    printf '|---|---|---|---|---|---|---|---|---|\n'
    local ssh_thr ssh_thr8 ha_cps ha_cps64 ssh_a50
    ssh_thr=$(awk -v t="$(med ssh thr1)" 'BEGIN { if (t == "NA") print "NA"; else print t * 1.15 }')
    ssh_thr8=$(med ssh thr8)
    ha_cps=$(med haproxy cps)
    ha_cps64=$(med haproxy cps64)
    ssh_a50=$(med ssh add50)
    for p in $(peer_rows); do
        [[ $p == direct ]] && continue
        [[ $p == warren* && -n $WARREN_REASON ]] && { printf '| %s | not available | | | | | | | |\n' "${LABEL[$p]}"; continue; }
        printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "${LABEL[$p]}" \
            "$( [[ $p == ssh ]] && echo — || bar "$(med "$p" thr1)" '>=' "$ssh_thr")" \
            "$( [[ $p == ssh ]] && echo — || bar "$(med "$p" thr8)" '>=' "$ssh_thr8")" \
            "$(bar "$(med "$p" thr8)" '>=' "$(med "$p" thr1)")" \
            "$( [[ $p == haproxy ]] && echo — || bar "$(med "$p" cps)" '>=' "$ha_cps")" \
            "$( [[ $p == haproxy ]] && echo — || bar "$(med "$p" cps64)" '>=' "$ha_cps64")" \
            "$( [[ $p == ssh ]] && echo — || bar "$(med "$p" add50)" '<=' "$ssh_a50")" \
            "$(bar "$(med "$p" rss)" '<=' 4096)" \
            "$(bar "$(med "$p" hs)" '>=' 2000)"
    done

    if selected warren && [[ -z $WARREN_REASON ]]; then
        printf '\n### Carrier targets\n\n'
        printf '| carrier | 1 stream ≥ 0.8× warren raw | 1 stream ≥ stunnel |\n|---|---|---|\n'
        local raw08 st
        raw08=$(awk -v t="$(med warren thr1)" 'BEGIN { if (t == "NA") print "NA"; else print t * 0.8 }')
        st=$(med stunnel thr1)
        for p in warren-tls warren-ws warren-wss warren-http; do
            selected "$p" || continue
            printf '| %s | %s | %s |\n' "${LABEL[$p]}" "$(bar "$(med "$p" thr1)" '>=' "$raw08")" \
                "$(bar "$(med "$p" thr1)" '>=' "$st")"
        done
    fi

    local http_rows=0
    for p in "${HTTP_PATHS[@]}"; do selected "$p" && http_rows=1; done
    if ((http_rows)) && [[ -z $WARREN_REASON ]]; then
        printf '\n### HTTP carrier\n\n'
        printf 'One stream each way (iperf3, and iperf3 -R for the target sending), and the p50 latency a 1-byte round trip gains.\n\n'
        printf '| path | up MiB/s | down MiB/s | added p50 µs | added p50 µs, 2 cores |\n|---|--:|--:|--:|--:|\n'
        for p in "${HTTP_PATHS[@]}"; do
            selected "$p" || continue
            printf '| %s | %s | %s | %s | %s |\n' "${LABEL[$p]}" "$(mib "$(med "$p" thr1)")" \
                "$(mib "$(med "$p" thr1d)")" "$(fmt "$(med "$p" add50)" 1)" "$(fmt "$(med "$p" add50f)" 1)"
        done
    fi

    printf '\n### How\n\n'
    printf -- '- Throughput: iperf3 -t %s -O %s, 1 and 8 streams (-P 8), received side.\n' "$IPERF_SECS" "$IPERF_OMIT"
    printf -- '- Latency: wr_loadgen pingpong, one connection, 1 byte each way, back to back for %s s; added = peer − direct in the same run, paired per run. Measured first with the load generator, the tunnel (all its processes and threads) and the echo server pinned to one core, then free-running. A wake-up across cores costs ~50 µs on this VM, so free-running figures flip between modes with scheduler placement; the one-core figure is the tunnel'"'"'s own cost per round trip and is the one the targets use.\n' "$PP_SECS"
    printf -- '- conn/s: wr_loadgen connrate, 16 dialers, then 64, for %s s each; each connection does a 1-byte echo end to end, then closes.\n' "$CR_SECS"
    printf -- '- RSS: VmRSS summed over the tunnel'"'"'s process trees with %s idle echo-verified connections minus before, divided by %s (ssh: client + sshd session processes; ss: ss-tunnel + ss-server; warren: client + relay; socat forks a process per connection and each counts its shared pages in full).\n' "$HOLD_CONNS" "$HOLD_CONNS"
    printf -- '- Handshakes/s: warren: relay pinned to one core (hook, see --help); ssh: complete connection setups/s (curve25519 key exchange + public-key auth + an in-process sftp session, "sftp -b /dev/null"), 4 parallel clients, sshd free on all cores, so not per core; others n/a.\n'
    printf -- '- haproxy runs with its default thread count; ss-server/ss-tunnel, socat and ssh are single-threaded per process.\n'
    if [[ -n $WARREN_REASON ]] && selected warren; then
        printf -- '- warren -L: not available: %s.\n' "$WARREN_REASON"
    fi

    printf '\n<details><summary>Per-run values</summary>\n\n'
    printf '| peer | metric | runs |\n|---|---|---|\n'
    for p in $(peer_rows); do
        [[ $p == warren* && -n $WARREN_REASON ]] && continue
        for m in thr1 thr8 thr1d p50 p99 add50 add99 p50f p99f add50f cps cfail rss hs; do
            printf '| %s | %s | %s |\n' "${LABEL[$p]}" "$m" "${RES[$p:$m]:-}"
        done
    done
    printf '\n</details>\n'
}

# ---------------------------------------------------------------- main

main() {
    parse_args "$@"
    check_prereqs
    raise_nofile
    begin_work bench
    if ((QUICK)); then
        IPERF_SECS=2 IPERF_OMIT=0 PP_SECS=1 CR_SECS=1 HS_SECS=1
    else
        IPERF_SECS=5 IPERF_OMIT=1 PP_SECS=3 CR_SECS=3 HS_SECS=3
    fi

    local started=$SECONDS run p
    start_targets
    selected ssh && { start_private_sshd || die "private sshd did not start: $(tail -3 "$WORK/sshd.log")"; }
    if [[ " ${SELECTED[*]} " == *" warren"* ]]; then # warren or any of its carriers
        if detect_warren; then
            log "warren: $WARREN_BIN carries -L traffic; measuring it"
        else
            log "warren: not available: $WARREN_REASON"
        fi
    fi
    for ((run = 1; run <= RUNS; run++)); do
        for p in $(peer_rows); do
            [[ $p == warren* && -n $WARREN_REASON ]] && continue
            bench_peer "$p" "$run"
        done
    done
    log "done in $((SECONDS - started)) s"
    if [[ -n $OUT ]]; then
        report | tee "$OUT"
    else
        report
    fi
}

main "$@"
