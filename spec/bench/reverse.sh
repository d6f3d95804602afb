#!/usr/bin/env bash
# reverse.sh: the reverse-tunnel benchmark. Measures, in one run on loopback, redis-benchmark and
# iperf3 directly, through warren's reverse tunnel (warren serve + warren -R) and through ssh -R,
# then registers many services on one relay and measures the time and the relay's memory.
# It starts and stops everything it measures; run it with --help for the details.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/../.." && pwd)
readonly SCRIPT_DIR REPO_DIR
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$SCRIPT_DIR/lib.sh"
readonly PORT_LO=19000 PORT_HI=19899 # bench.sh uses 17000-17999, stress.sh 18000-18999
readonly REDIS_CLIENTS=50 REDIS_PIPELINE=16

RUNS=3
QUICK=0
OUT=""
SERVICES=1000
CONCURRENCY=64
POOL_LO=""
SSH_PEER=auto
WARREN_BIN=${WARREN_BIN:-}
WARREN_KEY=""
WORK=""
PORT_NEXT=0
PIDS=()      # every process started, for cleanup
PEER_PIDS=() # the tunnel being measured
REDIS_AT="" IPERF_AT="" # where clients connect to reach redis-server / iperf3 -s through the path
REDIS_PORT="" IPERF_PORT="" IPERF_PID="" SSHD_PID="" SSHD_PORT=""
SSH_REASON="" # why the ssh -R row is missing, when it is
FAILURES=()
declare -A RES=() # "path:metric" -> space-separated values, one per run
declare -A LABEL=([direct]="direct" [warren]="warren -R" [ssh]="ssh -R" [seq]="sequential (1 task), any port"
    [conc]="concurrent" [seqx]="sequential (1 task), explicit ports")
readonly REGISTER_CASES=(seq conc seqx)
readonly COMMAND_LINE="spec/bench/reverse.sh${*:+ $*}"

usage() {
    cat <<EOF
usage: spec/bench/reverse.sh [--runs N] [--quick] [--out FILE.md] [--services N]
                             [--concurrency C] [--pool FROM] [--no-ssh]

Measures reverse tunnels on 127.0.0.1, to targets this script starts itself, on three paths:
direct, warren -R (a 'warren serve --ports ...' relay and a 'warren -R' client, two processes)
and ssh -R (its own sshd with throwaway keys, aes128-gcm; only as root):
  - redis-benchmark -t set,get -P ${REDIS_PIPELINE} -c ${REDIS_CLIENTS} -q against redis-server (--save '' --appendonly no):
    SET and GET requests/s
  - iperf3 to an iperf3 -s behind the tunnel: 1 stream and 8 streams (-P 8), Gbit/s
  - N services (--services, default 1000) registered on one fresh relay by one client (one per
    1024 services: the relay's per-client quota) running spec/bench/register_many.lua, three
    ways: sequentially and from C concurrent tasks, each asking for "any" outer port, and
    sequentially naming each port; wall-clock time, registrations/s, the relay's VmRSS idle and
    with all N held (KiB per service), the relay's CPU time per registration, and the time to
    list them all
Every run measures every path; the report shows medians over the runs and the ratios to direct
and to ssh -R, with the command line at the top. The exit status is 1 if any measurement failed
(the table shows n/a where it did), 2 on a usage or setup error.

options:
  --runs N          runs (default 3)
  --quick           1 run, shorter redis and iperf3 runs (under a minute)
  --out FILE.md     also write the report to FILE.md
  --services N      services to register (default 1000; the relay's per-client quota is 1024)
  --concurrency C   tasks registering at once in the concurrent case (default 64)
  --pool FROM       the relay's outer-port pool for the registrations: FROM..FROM+N-1 (default:
                    the first of 20000, 21000, ... 29000 where no socket uses any of those ports)
  --no-ssh          leave out the ssh -R path

warren is \$WARREN_BIN, else build*/warren of this repository, else warren on PATH; build it
with -DCMAKE_BUILD_TYPE=Release for meaningful figures. Private ports come from
${PORT_LO}-${PORT_HI}. Every child is killed on exit and every measurement is bounded by timeout(1).
Needs redis-server, redis-benchmark (redis-tools), iperf3, jq, and for ssh -R openssh-server
and openssh-client, run as root.
EOF
}

log() { printf '[reverse %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'reverse.sh: %s\n' "$*" >&2; exit 2; }
fail() { FAILURES+=("$*"); log "  FAILED: $*"; }

# ---------------------------------------------------------------- arguments and prerequisites

parse_args() {
    while (($#)); do
        case "$1" in
            --runs) RUNS=${2:?--runs needs N}; shift 2 ;;
            --quick) QUICK=1; shift ;;
            --out) OUT=${2:?--out needs a file}; shift 2 ;;
            --services) SERVICES=${2:?--services needs N}; shift 2 ;;
            --concurrency) CONCURRENCY=${2:?--concurrency needs C}; shift 2 ;;
            --pool) POOL_LO=${2:?--pool needs a port}; shift 2 ;;
            --no-ssh) SSH_PEER=0; shift ;;
            -h | --help) usage; exit 0 ;;
            *) usage >&2; die "unknown argument: $1" ;;
        esac
    done
    [[ $RUNS =~ ^[1-9][0-9]?$ ]] || die "--runs wants 1..99, got '$RUNS'"
    [[ $SERVICES =~ ^[1-9][0-9]{0,4}$ ]] || die "--services wants a positive number, got '$SERVICES'"
    [[ $CONCURRENCY =~ ^[1-9][0-9]{0,3}$ ]] || die "--concurrency wants 1..9999, got '$CONCURRENCY'"
    if [[ -n $POOL_LO ]] && ! [[ $POOL_LO =~ ^[1-9][0-9]{0,4}$ ]] || ((${POOL_LO:-0} + SERVICES - 1 > 65535)); then
        die "--pool wants a port FROM such that FROM+$SERVICES-1 <= 65535"
    fi
    if ((QUICK)); then RUNS=1; fi
    LABEL[conc]="concurrent ($CONCURRENCY tasks), any port"
}

check_prereqs() {
    local missing=() t
    for t in redis-server redis-benchmark iperf3 jq timeout awk; do
        command -v "$t" >/dev/null 2>&1 || missing+=("$t")
    done
    if ((${#missing[@]})); then
        die "missing: ${missing[*]} (Debian: apt-get install redis-server redis-tools iperf3 jq)"
    fi
    find_warren
    "$WARREN_BIN" version >/dev/null 2>&1 || die "$WARREN_BIN does not run"
    if [[ $SSH_PEER == 0 ]]; then
        SSH_REASON="left out (--no-ssh)"
    elif ((EUID != 0)); then
        SSH_REASON="needs root for its private sshd"
    elif ! command -v ssh >/dev/null || ! command -v ssh-keygen >/dev/null || [[ ! -x /usr/sbin/sshd ]]; then
        SSH_REASON="openssh-server/openssh-client not installed"
    fi
    [[ -n $SSH_REASON ]] && log "ssh -R: $SSH_REASON"
    return 0
}

raise_nofile() {
    # The relay holds one listening socket per registered service.
    local hard
    hard=$(ulimit -Hn)
    [[ $hard == unlimited ]] && hard=65536
    ((hard > 65536)) && hard=65536
    ulimit -n "$hard"
    ((hard >= SERVICES + 256)) || die "ulimit -n hard limit is $hard; $SERVICES services need at least $((SERVICES + 256))"
}

# The outer-port pool for the registrations: a window no socket uses (listening or not), outside
# the kernel's ephemeral range, so the relay can bind every port of it.
choose_pool() {
    local lo eph_lo eph_hi
    read -r eph_lo eph_hi </proc/sys/net/ipv4/ip_local_port_range
    if [[ -n $POOL_LO ]]; then
        (($(sockets_in "$POOL_LO" $((POOL_LO + SERVICES - 1))) == 0)) ||
            die "--pool $POOL_LO: ports $POOL_LO-$((POOL_LO + SERVICES - 1)) are in use"
    else
        for ((lo = 20000; lo <= 29000; lo += 1000)); do
            ((lo + SERVICES - 1 < eph_lo || lo > eph_hi)) || continue
            if (($(sockets_in "$lo" $((lo + SERVICES - 1))) == 0)); then POOL_LO=$lo; break; fi
        done
        [[ -n $POOL_LO ]] || die "no free window of $SERVICES ports in 20000-29999; pass --pool FROM"
    fi
    POOL_HI=$((POOL_LO + SERVICES - 1))
    log "outer-port pool for the registrations: $POOL_LO-$POOL_HI"
}

# ---------------------------------------------------------------- targets

start_targets() {
    alloc_port REDIS_PORT
    spawn redis-server redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
        --protected-mode no --daemonize no --loglevel warning
    wait_listen "$REDIS_PORT" "$SPAWNED" || die "redis-server did not start: $(tail -3 "$WORK/redis-server.log")"
    start_iperf
}

# ---------------------------------------------------------------- paths

# wait_line FILE PATTERN SECONDS [PID]: until a line of FILE matches (grep -E), PID dies, or time.
wait_line() {
    local i
    for ((i = 0; i < $3 * 20; i++)); do
        grep -Eq "$2" "$1" 2>/dev/null && return 0
        if [[ -n ${4:-} ]] && ! kill -0 "$4" 2>/dev/null; then
            grep -Eq "$2" "$1" 2>/dev/null
            return
        fi
        sleep 0.05
    done
    return 1
}

# start_path PATH: sets REDIS_AT and IPERF_AT (the ports clients use) and PEER_PIDS; non-zero if
# the tunnel does not come up.
start_path() {
    local path=$1 relay o1 o2 last=""
    PEER_PIDS=()
    case $path in
        direct)
            REDIS_AT=$REDIS_PORT IPERF_AT=$IPERF_PORT
            ;;
        warren)
            # One client publishes both targets; the relay's pool is exactly two ports, and the
            # client takes "any" of them (OUTER 0) and prints which.
            alloc_port relay
            alloc_port o1
            alloc_port o2
            spawn warren-relay "$WARREN_BIN" serve "127.0.0.1:$relay" -k "$WARREN_KEY" \
                --ports "$o1" --ports "$o2" --outer-bind 127.0.0.1
            PEER_PIDS=("$SPAWNED")
            wait_listen "$relay" "$SPAWNED" || return 1
            spawn warren-client "$WARREN_BIN" -R "127.0.0.1:0:127.0.0.1:$REDIS_PORT" --name redis \
                -R "127.0.0.1:0:127.0.0.1:$IPERF_PORT" --name iperf3 "127.0.0.1:$relay" -k "$WARREN_KEY"
            PEER_PIDS+=("$SPAWNED")
            wait_line "$WORK/warren-client.log" '^iperf3: relay port [0-9]+ ->' 10 "$SPAWNED" || return 1
            REDIS_AT=$(sed -n 's/^redis: relay port \([0-9]*\) -> .*/\1/p' "$WORK/warren-client.log")
            IPERF_AT=$(sed -n 's/^iperf3: relay port \([0-9]*\) -> .*/\1/p' "$WORK/warren-client.log")
            [[ -n $REDIS_AT && -n $IPERF_AT ]] || return 1
            ;;
        ssh)
            alloc_port o1
            alloc_port o2
            spawn ssh ssh "${SSH_OPTS[@]}" -p "$SSHD_PORT" -N -o ExitOnForwardFailure=yes \
                -R "127.0.0.1:$o1:127.0.0.1:$REDIS_PORT" -R "127.0.0.1:$o2:127.0.0.1:$IPERF_PORT" root@127.0.0.1
            # The outer ports listen in sshd's session process.
            PEER_PIDS=("$SPAWNED")
            REDIS_AT=$o1 IPERF_AT=$o2
            ;;
    esac
    ((${#PEER_PIDS[@]})) && last=${PEER_PIDS[-1]}
    wait_listen "$REDIS_AT" "$last" && wait_listen "$IPERF_AT" "$last"
}

stop_path() {
    local p
    for p in "${PEER_PIDS[@]}"; do kill_tree "$p"; done
    wait_sshd_sessions
    PEER_PIDS=()
}

path_log_tail() {
    log_tails 3 warren-relay warren-client ssh sshd
}

# ---------------------------------------------------------------- measurements

record() { RES[$1:$2]+="${3:-NA} "; }

measure_redis() {
    local path=$1 out set get
    out=$(timeout "$REDIS_TIMEOUT" redis-benchmark -h 127.0.0.1 -p "$REDIS_AT" -t set,get \
        -P "$REDIS_PIPELINE" -c "$REDIS_CLIENTS" -n "$REDIS_N" -q 2>&1 | tr '\r' '\n') || true
    # The last line of each test: "SET: 947867.31 requests per second, p50=0.679 msec".
    set=$(awk '$1 == "SET:" && $3 == "requests" { v = $2 } END { print v }' <<<"$out")
    get=$(awk '$1 == "GET:" && $3 == "requests" { v = $2 } END { print v }' <<<"$out")
    record "$path" set "${set:-NA}"
    record "$path" get "${get:-NA}"
    if [[ -z $set || -z $get ]]; then
        fail "$path: redis-benchmark: $(grep -v '^ *$' <<<"$out" | tail -2 | tr '\n' ' ')"
    else
        log "  $path: redis SET $set/s, GET $get/s"
    fi
}

measure_iperf() {
    local path=$1 streams=$2 json=$WORK/iperf.json gbps=NA
    if timeout $((IPERF_SECS + IPERF_OMIT + 20)) iperf3 -c 127.0.0.1 -p "$IPERF_AT" -t "$IPERF_SECS" \
        -O "$IPERF_OMIT" -P "$streams" --connect-timeout 3000 -J >"$json" 2>>"$WORK/iperf3-client.log"; then
        gbps=$(jq -r '.end.sum_received.bits_per_second / 1e9 | . * 100 | round / 100' "$json" 2>/dev/null || echo NA)
    fi
    record "$path" "thr$streams" "$gbps"
    if [[ $gbps == NA ]]; then
        fail "$path: iperf3 -P $streams: $(jq -r '.error // empty' "$json" 2>/dev/null | head -1)"
        start_iperf # a failed test can leave the server stuck
    else
        log "  $path: iperf3 -P $streams: $gbps Gbit/s"
    fi
}

bench_path() {
    local path=$1 run=$2 m
    log "run $run/$RUNS: $path"
    if ! start_path "$path"; then
        fail "$path: the tunnel did not come up (run $run)"
        path_log_tail
        stop_path
        for m in set get thr1 thr8; do record "$path" "$m" NA; done
        return 0
    fi
    measure_redis "$path"
    measure_iperf "$path" 1
    measure_iperf "$path" 8
    stop_path
}

# measure_register MODE TASKS [OUTER]: a fresh relay with the pool, register_many.lua registers
# SERVICES services from TASKS tasks (on "any" port, or from port OUTER on) and holds them while
# the relay's memory is read.
measure_register() {
    local mode=$1 tasks=$2 outer=() relay rpid reg out=$WORK/register.log line busy rss0 rss1 cpu0 cpu1 listening
    local n failed listed ms m ok=1
    [[ -n ${3:-} ]] && outer=(--outer "$3")
    busy=$(sockets_in "$POOL_LO" "$POOL_HI" 0A)
    if ((busy)); then
        fail "$mode: $busy ports of the pool $POOL_LO-$POOL_HI are listening before the relay starts"
        for m in ms per_s rss0 rss1 kib cpu list; do record "$mode" "$m" NA; done
        return 0
    fi
    alloc_port relay
    spawn register-relay "$WARREN_BIN" serve "127.0.0.1:$relay" -k "$WARREN_KEY" \
        --ports "$POOL_LO-$POOL_HI" --outer-bind 127.0.0.1
    rpid=$SPAWNED
    wait_listen "$relay" "$rpid" || ok=0
    sleep 0.5 # idle: the relay has finished starting
    rss0=$(proc_rss_kb "$rpid")
    cpu0=$(proc_cpu_ms "$rpid")
    : >"$out"
    timeout 300 "$WARREN_BIN" run "$SCRIPT_DIR/register_many.lua" "127.0.0.1:$relay" "$WARREN_KEY" \
        --count "$SERVICES" --concurrency "$tasks" --clients $(((SERVICES + 1023) / 1024)) "${outer[@]}" \
        --hold 240 >"$out" 2>"$WORK/register.err" &
    reg=$!
    PIDS+=("$reg")
    ((ok)) && wait_line "$out" '^ready' 240 "$reg" || ok=0
    sleep 0.5 # let the relay finish logging the last registrations
    rss1=$(proc_rss_kb "$rpid")
    cpu1=$(proc_cpu_ms "$rpid")
    listening=$(sockets_in "$POOL_LO" "$POOL_HI" 0A)
    line=$(grep '^registered=' "$out" || true)
    kill_tree "$reg"
    kill_tree "$rpid"
    n=$(kv registered "$line")
    failed=$(kv failed "$line")
    listed=$(kv listed "$line")
    ms=$(kv ms "$line")
    if ((!ok)) || [[ $n != "$SERVICES" || $failed != 0 || $listed != "$SERVICES" || $listening != "$SERVICES" ]]; then
        fail "$mode: ${n:-0} of $SERVICES registered, ${failed:-?} failed, relay lists ${listed:-?}, $listening listening: $(
            grep -E '^(first_error|list_error):' "$out" | tr '\n' ' ')$(tail -2 "$WORK/register.err" | tr '\n' ' ')"
        for m in ms per_s rss0 rss1 kib cpu list; do record "$mode" "$m" NA; done
        return 0
    fi
    record "$mode" ms "$ms"
    record "$mode" per_s "$(kv per_s "$line")"
    record "$mode" rss0 "$rss0"
    record "$mode" rss1 "$rss1"
    record "$mode" kib "$(awk -v a="$rss1" -v b="$rss0" -v n="$n" 'BEGIN { printf "%.2f", (a - b) / n }')"
    record "$mode" cpu "$(awk -v a="$cpu1" -v b="$cpu0" -v n="$n" 'BEGIN { printf "%.0f", (a - b) * 1000 / n }')"
    record "$mode" list "$(kv list_ms "$line")"
    log "  $mode: $n services in $ms ms ($(kv per_s "$line")/s); relay RSS $rss0 -> $rss1 KiB; relay CPU $((cpu1 - cpu0)) ms; list $(kv list_ms "$line") ms"
}

# ---------------------------------------------------------------- report

# vs_direct PATH METRIC: PATH against direct, or a dash on the direct row.
vs_direct() { if [[ $1 == direct ]]; then echo —; else med_ratio "$1" direct "$2"; fi; }

paths() {
    echo direct warren
    [[ -z $SSH_REASON ]] && echo ssh
    return 0
}

# shellcheck disable=SC2015,SC2016 # backquotes are Markdown; "a && echo — || ratio" cannot fail in between
report() {
    local p took=$1
    printf '# warren reverse-tunnel benchmark\n\n'
    printf '`%s`\n\n' "$COMMAND_LINE"
    printf '%s, %s CPUs, %s, %s. Median of %s run(s)%s; the whole run took %s s. Loopback only.\n\n' \
        "$(date -u +%Y-%m-%dT%H:%MZ)" "$(nproc)" "$(uname -sr)" "$("$WARREN_BIN" version 2>/dev/null | head -1)" \
        "$RUNS" "$( ((QUICK)) && echo ', --quick' || true)" "$took"

    printf '### redis-benchmark -t set,get -P %s -c %s -n %s\n\n' "$REDIS_PIPELINE" "$REDIS_CLIENTS" "$REDIS_N"
    printf '| path | SET req/s | GET req/s | SET vs direct | GET vs direct |\n|---|--:|--:|--:|--:|\n'
    for p in $(paths); do
        printf '| %s | %s | %s | %s | %s |\n' "${LABEL[$p]}" "$(fmt "$(med "$p" set)" 0)" "$(fmt "$(med "$p" get)" 0)" \
            "$(vs_direct "$p" set)" \
            "$(vs_direct "$p" get)"
    done

    printf '\n### iperf3 through the reverse tunnel (-t %s -O %s)\n\n' "$IPERF_SECS" "$IPERF_OMIT"
    printf '| path | 1 stream Gbit/s | 8 streams Gbit/s | 1 stream vs direct | 8 streams vs direct |\n|---|--:|--:|--:|--:|\n'
    for p in $(paths); do
        printf '| %s | %s | %s | %s | %s |\n' "${LABEL[$p]}" "$(fmt "$(med "$p" thr1)" 2)" "$(fmt "$(med "$p" thr8)" 2)" \
            "$(vs_direct "$p" thr1)" \
            "$(vs_direct "$p" thr8)"
    done
    if [[ -z $SSH_REASON ]]; then
        printf '\nwarren -R / ssh -R: SET %s, GET %s, 1 stream %s, 8 streams %s.\n' \
            "$(med_ratio warren ssh set)" "$(med_ratio warren ssh get)" \
            "$(med_ratio warren ssh thr1)" "$(med_ratio warren ssh thr8)"
    else
        printf '\nssh -R: %s.\n' "$SSH_REASON"
    fi

    printf '\n### %s services on one relay (outer ports %s-%s, %s client(s))\n\n' "$SERVICES" "$POOL_LO" "$POOL_HI" \
        $(((SERVICES + 1023) / 1024))
    printf '| registration | all registered in ms | registrations/s | relay RSS idle KiB | relay RSS with all KiB | KiB / service | relay CPU µs / registration | list all ms |\n'
    printf '|---|--:|--:|--:|--:|--:|--:|--:|\n'
    for p in "${REGISTER_CASES[@]}"; do
        printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "${LABEL[$p]}" "$(fmt "$(med "$p" ms)" 0)" \
            "$(fmt "$(med "$p" per_s)" 0)" "$(fmt "$(med "$p" rss0)" 0)" "$(fmt "$(med "$p" rss1)" 0)" \
            "$(fmt "$(med "$p" kib)" 2)" "$(fmt "$(med "$p" cpu)" 0)" "$(fmt "$(med "$p" list)" 1)"
    done

    printf '\n### How\n\n'
    printf -- '- Paths: direct; warren -R: `warren serve 127.0.0.1:R --ports A --ports B --outer-bind 127.0.0.1` and one `warren -R 127.0.0.1:0:127.0.0.1:REDIS --name redis -R 127.0.0.1:0:127.0.0.1:IPERF --name iperf3` client, so every byte goes user -> relay -> encrypted session -> client -> target; ssh -R: `ssh -N -R ... -R ...` to a private sshd (aes128-gcm, curve25519). All processes free-running on all cores, default logging.\n'
    printf -- '- redis-server started by this script (`--save '"''"' --appendonly no`); redis-benchmark `-t set,get -P %s -c %s -n %s -q`, requests/s as it prints them.\n' "$REDIS_PIPELINE" "$REDIS_CLIENTS" "$REDIS_N"
    printf -- '- iperf3 -c to the outer port, -t %s -O %s, received side; iperf3 -s runs behind the tunnel.\n' "$IPERF_SECS" "$IPERF_OMIT"
    printf -- '- Registrations: a fresh relay per case with a pool of exactly %s ports; `warren run spec/bench/register_many.lua` connects its client(s) (not timed), then registers %s services from 1 task or %s tasks with `outer = "any"` (the relay picks a free port), or from 1 task naming the ports in order; the time runs from the first request to the last answer. RSS is the relay'"'"'s VmRSS 0.5 s after it started and 0.5 s after the last answer; per service = the difference / %s, so it includes the client'"'"'s session and Lua garbage not yet collected. CPU is the relay'"'"'s user+system time over the handshake, the registrations and the listing, per registration. "list all" is one `services` request answered with all %s. Every case checks that the relay lists all %s and that all %s ports listen.\n' \
        "$SERVICES" "$SERVICES" "$CONCURRENCY" "$SERVICES" "$SERVICES" "$SERVICES" "$SERVICES"
    if ((${#FAILURES[@]})); then
        printf '\n### Failures\n\n'
        for p in "${FAILURES[@]}"; do printf -- '- %s\n' "$p"; done
    fi

    printf '\n<details><summary>Per-run values</summary>\n\n| path | metric | runs |\n|---|---|---|\n'
    for p in $(paths); do
        for m in set get thr1 thr8; do printf '| %s | %s | %s |\n' "${LABEL[$p]}" "$m" "$(xargs <<<"${RES[$p:$m]:-}")"; done
    done
    for p in "${REGISTER_CASES[@]}"; do
        for m in ms per_s rss0 rss1 kib cpu list; do printf '| %s | %s | %s |\n' "${LABEL[$p]}" "$m" "$(xargs <<<"${RES[$p:$m]:-}")"; done
    done
    printf '\n</details>\n'
}

# ---------------------------------------------------------------- main

main() {
    parse_args "$@"
    check_prereqs
    raise_nofile
    begin_work reverse
    if ((QUICK)); then
        REDIS_N=300000 IPERF_SECS=2 IPERF_OMIT=0
    else
        REDIS_N=2000000 IPERF_SECS=5 IPERF_OMIT=1
    fi
    REDIS_TIMEOUT=180
    WARREN_KEY=$("$WARREN_BIN" keygen)
    choose_pool

    local started=$SECONDS run p
    start_targets
    if [[ -z $SSH_REASON ]]; then
        start_private_sshd || die "private sshd did not start: $(tail -3 "$WORK/sshd.log")"
    fi
    for ((run = 1; run <= RUNS; run++)); do
        for p in $(paths); do bench_path "$p" "$run"; done
        log "run $run/$RUNS: $SERVICES registrations"
        measure_register seq 1
        measure_register conc "$CONCURRENCY"
        measure_register seqx 1 "$POOL_LO"
    done
    local took=$((SECONDS - started))
    log "done in $took s"
    if [[ -n $OUT ]]; then
        report "$took" | tee "$OUT"
    else
        report "$took"
    fi
    if ((${#FAILURES[@]})); then
        log "${#FAILURES[@]} measurement(s) failed"
        exit 1
    fi
}

main "$@"
