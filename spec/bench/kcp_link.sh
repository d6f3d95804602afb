#!/usr/bin/env bash
# kcp_link.sh [--short]: the KCP carrier against the TCP carrier (BBR, CUBIC) and kcptun across a
# bad link with real delay: wr_lossy_link between two network namespaces (kcp_netns.sh), by
# default 10 ms each way (20 ms RTT), 2% loss each way, 1% reordered (+5 ms), 1% duplicated and
# a 100 Mbit/s bottleneck with a drop-tail queue of 200 packets. Root only.
#
# Clients (warren -L, kcptun-client, iperf3 -c, wr_loadgen pingpong) run in one namespace; relays,
# kcptun-server, iperf3 -s and wr_loadgen's echo server in the other. Per carrier and round: one
# iperf3 stream for RUN_SECONDS (upload, client to relay), then one connection of 1 KiB request/reply
# for PING_SECONDS; the carriers are interleaved within each round, and the figures are the
# medians over ROUNDS rounds. The link counts the IP bytes each way, so the table also gives the
# bytes on the wire per payload byte (up: the data direction, down: the acknowledgements).
#
#   sudo WARREN=build/release/warren spec/bench/kcp_link.sh           # 3 rounds of 10 s
#   --short: 1 round of 3 s (what the KCP spec runs)
# Settings (environment): DELAY LOSS REORDER REORDER_DELAY DUP RATE QUEUE (wr_lossy_link's, RATE in
# Mbit/s, 0 = none), ROUNDS, RUN_SECONDS, PING_SECONDS, CARRIERS (names to run, space-separated, from
# the list below; default all), KCP_ARGS (more flags for the -K clients and relays, e.g.
# "--kcp-sndwnd 256"), KCPTUN_CRYPT (default aes), KEEP=1 keeps the logs.
set -euo pipefail

die() { echo "kcp_link: $*" >&2; exit 2; }
[[ $(id -u) == 0 ]] || die "needs root (network namespaces, TUN devices)"
[[ -c /dev/net/tun ]] || die "no /dev/net/tun"
here=$(cd "$(dirname "$0")" && pwd)
WARREN=${WARREN:-$here/../../build/release/warren}
bindir=$(cd "$(dirname "$WARREN")" && pwd)/spec/bench
LINK=${LINK:-$bindir/wr_lossy_link}
LOADGEN=${LOADGEN:-$bindir/wr_loadgen}
DELAY=${DELAY:-10} LOSS=${LOSS:-2} REORDER=${REORDER:-1} REORDER_DELAY=${REORDER_DELAY:-5}
DUP=${DUP:-1} RATE=${RATE:-100} QUEUE=${QUEUE:-200}
ROUNDS=${ROUNDS:-3} SECONDS_PER=${RUN_SECONDS:-10} PING_SECONDS=${PING_SECONDS:-10}
KCPTUN_CRYPT=${KCPTUN_CRYPT:-aes}
read -ra KCP_EXTRA <<<"${KCP_ARGS:-}"
if [[ ${1:-} == --short ]]; then ROUNDS=1 SECONDS_PER=3 PING_SECONDS=3; fi
ALL="tcp-cubic tcp-bbr kcp-normal kcp-fast kcp-fast2 kcp-fast3 kcptun-fast kcptun-fast3 direct-cubic direct-bbr"
CARRIERS=${CARRIERS:-$ALL}
for tool in ip iperf3 jq; do command -v "$tool" >/dev/null || die "$tool is missing"; done
[[ -x $WARREN ]] || die "no warren binary at $WARREN"
[[ -x $LINK && -x $LOADGEN ]] || die "wr_lossy_link and wr_loadgen are built next to warren (spec/bench)"
if [[ $CARRIERS == *kcptun* ]] && ! command -v kcptun-client >/dev/null; then
    echo "kcp_link: no kcptun-client (Debian package kcptun): leaving kcptun out" >&2
    CARRIERS=${CARRIERS//kcptun-fast3/}
    CARRIERS=${CARRIERS//kcptun-fast/}
fi

A=wr-link-a-$$ B=wr-link-b-$$
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.3
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    "$here/kcp_netns.sh" down "$A" "$B"
    if [[ -n ${KEEP:-} ]]; then echo "logs kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$here/kcp_netns.sh" up "$A" "$B"
"$LINK" --ns-a "$A" --dev-a wrl0 --ns-b "$B" --dev-b wrl0 --delay "$DELAY" --loss "$LOSS" \
    --reorder "$REORDER" --reorder-delay "$REORDER_DELAY" --dup "$DUP" --rate "$RATE" \
    --queue "$QUEUE" >"$WORK/link.log" 2>&1 &
LINK_PID=$!
PIDS+=("$LINK_PID")

# `ip netns exec` execs its command, so $! of a backgrounded one is the process itself.
bg_b() { ip netns exec "$B" "$@" & PIDS+=($!); }

key=$("$WARREN" keygen)
R=10.201.0.2
bg_b "$WARREN" serve "$R:8100" --congestion cubic -k "$key" >"$WORK/relay-cubic.log" 2>&1
bg_b "$WARREN" serve "$R:8101" --congestion bbr -k "$key" >"$WORK/relay-bbr.log" 2>&1
port=8110
for mode in normal fast fast2 fast3; do
    bg_b "$WARREN" serve $R:$port -K --kcp-mode $mode "${KCP_EXTRA[@]}" -k "$key" \
        >"$WORK/relay-$mode.log" 2>&1
    port=$((port + 1))
done
KCPTUN_ARGS=(--crypt "$KCPTUN_CRYPT" --key "$key" --nocomp --sndwnd 1024 --rcvwnd 1024 --quiet)
if [[ $CARRIERS == *kcptun* ]]; then
    port=4000
    for mode in fast fast3; do
        for target in 127.0.0.1:5201 127.0.0.1:7000; do
            bg_b kcptun-server -l $R:$port -t $target --mode $mode "${KCPTUN_ARGS[@]}" \
                >"$WORK/kcptun-server-$port.log" 2>&1
            port=$((port + 1))
        done
    done
fi
bg_b "$LOADGEN" echo-server -l 127.0.0.1:7000 -d 86400 >"$WORK/echo.log" 2>&1
sleep 1

# The link's counters now: "UP_BYTES DOWN_BYTES" (IP bytes sent into the link each way).
link_bytes() {
    local before
    before=$(wc -l <"$WORK/link.log")
    kill -USR1 "$LINK_PID"
    for _ in $(seq 50); do
        (($(wc -l <"$WORK/link.log") >= before + 2)) && break
        sleep 0.02
    done
    tail -n 2 "$WORK/link.log" | sed -n 's/.* in_bytes=\([0-9]*\) .*/\1/p' | paste -sd' '
}

# start_client NAME: the client side of carrier NAME in A, forwarding 9001 to iperf3 and 9002 to
# the echo server; its pids go to CLIENT_PIDS (none for the direct runs).
start_client() {
    local c=(ip netns exec "$A")
    CLIENT_PIDS=()
    case $1 in
    tcp-cubic) c+=("$WARREN" -L 9001:127.0.0.1:5201 -L 9002:127.0.0.1:7000 "$R:8100" --congestion cubic) ;;
    tcp-bbr) c+=("$WARREN" -L 9001:127.0.0.1:5201 -L 9002:127.0.0.1:7000 "$R:8101" --congestion bbr) ;;
    kcp-normal) c+=("$WARREN" -K --kcp-mode normal -L 9001:127.0.0.1:5201 -L 9002:127.0.0.1:7000 "$R:8110") ;;
    kcp-fast) c+=("$WARREN" -K --kcp-mode fast -L 9001:127.0.0.1:5201 -L 9002:127.0.0.1:7000 "$R:8111") ;;
    kcp-fast2) c+=("$WARREN" -K --kcp-mode fast2 -L 9001:127.0.0.1:5201 -L 9002:127.0.0.1:7000 "$R:8112") ;;
    kcp-fast3) c+=("$WARREN" -K --kcp-mode fast3 -L 9001:127.0.0.1:5201 -L 9002:127.0.0.1:7000 "$R:8113") ;;
    kcptun-fast | kcptun-fast3)
        local mode=${1#kcptun-} base=4000
        [[ $mode == fast3 ]] && base=4002
        "${c[@]}" kcptun-client -l 127.0.0.1:9001 -r $R:$base --mode "$mode" "${KCPTUN_ARGS[@]}" \
            >>"$WORK/$1.log" 2>&1 &
        PIDS+=($!) CLIENT_PIDS+=($!)
        c+=(kcptun-client -l 127.0.0.1:9002 -r $R:$((base + 1)) --mode "$mode" "${KCPTUN_ARGS[@]}")
        ;;
    direct-*) return 0 ;;
    *) die "unknown carrier $1 (carriers: $ALL)" ;;
    esac
    [[ $1 == kcp-* ]] && c+=("${KCP_EXTRA[@]}")
    [[ $1 == tcp-* || $1 == kcp-* ]] && c+=(-k "$key")
    "${c[@]}" >>"$WORK/$1.log" 2>&1 &
    PIDS+=($!) CLIENT_PIDS+=($!)
}

# One round of carrier NAME: appends "MIBS UP_RATIO DOWN_RATIO P99_MS" to $WORK/NAME.results.
measure() {
    local name=$1 target=(-c 127.0.0.1 -p 9001) before after mibs bytes p99=- pid
    start_client "$name"
    case $name in
    direct-*) target=(-c $R -p 5201 -C "${name#direct-}") ;;
    *) sleep 1 ;; # the client connects to its relay (a probe connection would be a test to iperf3)
    esac
    ip netns exec "$B" iperf3 -s -1 -p 5201 >/dev/null 2>&1 & # one fresh server per run
    PIDS+=($!)
    sleep 0.3
    before=$(link_bytes)
    timeout $((SECONDS_PER + 30)) ip netns exec "$A" iperf3 "${target[@]}" -t "$SECONDS_PER" -J \
        >"$WORK/$name.json" 2>&1 || true
    after=$(link_bytes)
    mibs=$(jq '.end.sum_received.bits_per_second / 8 / 1048576' "$WORK/$name.json" 2>/dev/null) || mibs=
    bytes=$(jq '.end.sum_received.bytes' "$WORK/$name.json" 2>/dev/null) || bytes=
    if [[ -z $mibs || $mibs == null || $bytes == 0 ]]; then
        echo "$name: iperf3 failed: $(jq -r '.error // empty' "$WORK/$name.json" 2>/dev/null)" >&2
        mibs=0 bytes=0
    fi
    if [[ $name != direct-* ]]; then
        local out
        out=$(ip netns exec "$A" "$LOADGEN" pingpong -t 127.0.0.1:9002 -s 1024 -d "$PING_SECONDS" \
            -timeout 5 2>&1) || true
        p99=$(sed -n 's/^pingpong .* p99_us=\([0-9.]*\) .*/\1/p' <<<"$out")
        [[ -n $p99 ]] || { echo "$name: pingpong failed: $out" >&2; p99=-; }
    fi
    for pid in "${CLIENT_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${CLIENT_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    read -r up0 down0 <<<"$before"
    read -r up1 down1 <<<"$after"
    awk -v m="$mibs" -v b="$bytes" -v u=$((up1 - up0)) -v d=$((down1 - down0)) -v p="$p99" \
        'BEGIN { if (b > 0) printf "%.2f %.3f %.3f %s\n", m, u / b, d / b, p == "-" ? "-" : p / 1000;
                 else print "0 - - " (p == "-" ? "-" : p / 1000) }' >>"$WORK/$name.results"
}

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else print v[int((NR + 1) / 2)] }'; }

echo "link: $(head -n 1 "$WORK/link.log" | sed 's/^link ready: //')"
echo "$ROUNDS round(s), $SECONDS_PER s of iperf3 and $PING_SECONDS s of 1 KiB ping-pong per carrier; kcptun: --crypt $KCPTUN_CRYPT --nocomp, FEC 10/3 (its default), windows 1024"
for round in $(seq "$ROUNDS"); do
    for name in $CARRIERS; do measure "$name"; done
    echo "round $round done" >&2
done

printf '%-14s %9s %9s %9s %10s\n' carrier MiB/s wire-up wire-down p99-ms
for name in $CARRIERS; do
    f=$WORK/$name.results
    printf '%-14s %9s %9s %9s %10s\n' "$name" "$(cut -d' ' -f1 "$f" | median)" \
        "$(cut -d' ' -f2 "$f" | grep -vx -- - | median)" \
        "$(cut -d' ' -f3 "$f" | grep -vx -- - | median)" "$(cut -d' ' -f4 "$f" | grep -vx -- - | median)"
done
echo "(medians; wire-up/down: IP bytes into the link per payload byte; all runs: MiB/s wire-up wire-down p99-ms)"
for name in $CARRIERS; do echo "$name: $(paste -sd'|' "$WORK/$name.results")"; done
tail -n 2 "$WORK/link.log" | sed 's/^/link total /'
