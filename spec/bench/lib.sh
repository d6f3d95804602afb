# lib.sh: helpers sourced by bench.sh, stress.sh, reverse.sh and the hardening commands (attack.sh,
# chaos.sh, soak.sh): child processes, loopback ports, and the numbers in their reports. The sourcing script defines die (prints and exits 2) and the globals
# used here: WORK (scratch directory), PIDS (every process started, killed by cleanup), SPAWNED,
# PORT_LO, PORT_HI and PORT_NEXT (its private port range and where the next search starts).

# cleanup: the EXIT trap: kill every process started (with its descendants), drop WORK.
cleanup() {
    local rc=$? p
    trap - EXIT INT TERM
    for p in "${PIDS[@]}"; do kill_tree "$p"; done
    [[ -n $WORK && -d $WORK ]] && rm -rf "$WORK"
    exit "$rc"
}

descendants() {
    # All processes below $1, by walking parent links: socat forks one child per connection and
    # sshd one (or two) per session.
    ps -e -o pid=,ppid= | awk -v root="$1" '
        { kids[$2] = kids[$2] " " $1 }
        END { n = split(kids[root], q, " "); i = 1
              while (i <= n) { p = q[i++]; print p; m = split(kids[p], c, " ")
                               for (j = 1; j <= m; j++) q[++n] = c[j] } }'
}

kill_tree() {
    local root=$1 p all
    kill -0 "$root" 2>/dev/null || return 0
    all="$(descendants "$root") $root"
    for p in $all; do kill -TERM "$p" 2>/dev/null || true; done
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        kill -0 "$root" 2>/dev/null || break
        sleep 0.1
    done
    for p in $all; do kill -KILL "$p" 2>/dev/null || true; done
    wait "$root" 2>/dev/null || true
}

# spawn NAME CMD...: start CMD in the background, logging to $WORK/NAME.log; pid in SPAWNED.
spawn() {
    local name=$1
    shift
    "$@" >"$WORK/$name.log" 2>&1 &
    SPAWNED=$!
    PIDS+=("$SPAWNED")
}

port_in_use() {
    local hex
    hex=$(printf ':%04X' "$1")
    awk -v h="$hex" 'NR > 1 && substr($2, length($2) - 4) == h { f = 1 } END { exit !f }' \
        /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

port_listening() {
    local hex
    hex=$(printf ':%04X' "$1")
    awk -v h="$hex" 'NR > 1 && $4 == "0A" && substr($2, length($2) - 4) == h { f = 1 } END { exit !f }' \
        /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# alloc_port VAR: next free port of the private range (fresh for every start, so no peer waits on
# another's lingering sockets).
alloc_port() {
    local tries=0 p
    while ((tries++ < PORT_HI - PORT_LO)); do
        p=$PORT_NEXT
        PORT_NEXT=$((PORT_NEXT >= PORT_HI ? PORT_LO : PORT_NEXT + 1))
        if ! port_in_use "$p"; then
            printf -v "$1" '%s' "$p"
            return 0
        fi
    done
    die "no free port in $PORT_LO-$PORT_HI"
}

wait_listen() {
    local port=$1 pid=${2:-} i
    for ((i = 0; i < 100; i++)); do
        port_listening "$port" && return 0
        if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then return 1; fi
        sleep 0.05
    done
    return 1
}

# kv KEY LINE: the value of KEY=VALUE in LINE.
kv() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $2" | head -1; }

# median "V1 V2 ...": the median of the values, NA ones ignored; NA when none.
median() {
    tr ' ' '\n' <<<"$1" | awk '$1 != "" && $1 != "NA"' | sort -g |
        awk '{ v[NR] = $1 } END { if (!NR) print "NA"; else if (NR % 2) print v[(NR + 1) / 2];
                                  else printf "%.6g\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

fmt() { # fmt VALUE DECIMALS
    awk -v v="$1" -v d="$2" 'BEGIN { if (v == "NA" || v == "") print "n/a"; else printf("%." d "f\n", v) }'
}

ratio() { # ratio A B: A/B with a multiplication sign
    awk -v a="$1" -v b="$2" 'BEGIN { if (a == "NA" || b == "NA" || a == "" || b == "" || b + 0 == 0) print "n/a";
                                     else printf "%.2f×\n", a / b }'
}

# med PEER METRIC: the median of the runs recorded in RES[PEER:METRIC] (the sourcing script's
# associative array).
med() { median "${RES[$1:$2]:-}"; }

# med_ratio A B METRIC: A's median over B's, as ratio prints it.
med_ratio() { ratio "$(med "$1" "$3")" "$(med "$2" "$3")"; }

# locate_warren: sets WARREN_BIN (if unset) to a build directory's warren, else warren on PATH;
# fails when there is none to run.
locate_warren() {
    local c
    if [[ -z ${WARREN_BIN:-} ]]; then
        for c in "$REPO_DIR"/build*/warren; do
            [[ -x $c ]] && { WARREN_BIN=$c; break; }
        done
        [[ -z ${WARREN_BIN:-} ]] && WARREN_BIN=$(command -v warren 2>/dev/null || true)
    fi
    [[ -n ${WARREN_BIN:-} && -x $WARREN_BIN ]]
}

# find_warren: locate_warren, or die saying how to build it.
find_warren() {
    locate_warren || die "warren not found; build it
  (cmake -S $REPO_DIR -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build) or set WARREN_BIN"
}

# proc_rss_kb PID: VmRSS of one process in KiB (NA when it is gone).
proc_rss_kb() {
    awk '/^VmRSS:/ { print $2; f = 1 } END { if (!f) print "NA" }' "/proc/$1/status" 2>/dev/null || echo NA
}

# proc_cpu_ms PID: user + system CPU time the process has used so far, in ms (NA when gone).
proc_cpu_ms() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || { echo NA; return; }
    # Fields after the command name, which may hold spaces: utime and stime are the 12th and 13th.
    awk -v hz="$(getconf CLK_TCK)" '{ printf "%.0f\n", ($12 + $13) * 1000 / hz }' <<<"${stat##*) }"
}

# sockets_in LO HI [STATE]: how many TCP sockets (IPv4 and IPv6) have a local port in LO-HI;
# with STATE (the kernel's hex code, 0A = listening) only those in that state.
sockets_in() {
    awk -v lo="$1" -v hi="$2" -v st="${3:-}" '
        function hex(s,   i, v) { v = 0; for (i = 1; i <= length(s); i++)
                                      v = v * 16 + index("0123456789ABCDEF", substr(s, i, 1)) - 1
                                  return v }
        FNR > 1 && (st == "" || $4 == st) { p = hex(substr($2, length($2) - 3)); if (p >= lo && p <= hi) n++ }
        END { print n + 0 }' /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# start_private_sshd: an sshd on a port of the private range, loopback only, with throwaway host
# and user keys in $WORK/ssh, root login by key, forwarding (-L and -R) and sftp allowed, none of
# the system's configuration; sets SSHD_PID and SSHD_PORT, and SSH_OPTS for ssh and sftp (the
# port is the caller's: ssh -p, sftp -P). Needs root.
start_private_sshd() {
    local d=$WORK/ssh
    mkdir -p "$d"
    ssh-keygen -q -t ed25519 -N '' -C bench-host -f "$d/host_key"
    ssh-keygen -q -t ed25519 -N '' -C bench-user -f "$d/user_key"
    cp "$d/user_key.pub" "$d/authorized_keys"
    # sshd insists on its privilege-separation directory; creating it changes no configuration.
    [[ -d /run/sshd ]] || { mkdir -p /run/sshd && chmod 755 /run/sshd; }
    alloc_port SSHD_PORT
    spawn sshd /usr/sbin/sshd -D -e -f /dev/null -p "$SSHD_PORT" \
        -o ListenAddress=127.0.0.1 -o HostKey="$d/host_key" -o PidFile=none \
        -o AuthorizedKeysFile="$d/authorized_keys" -o StrictModes=no \
        -o PermitRootLogin=prohibit-password -o PubkeyAuthentication=yes \
        -o PasswordAuthentication=no -o KbdInteractiveAuthentication=no -o UsePAM=no \
        -o AllowTcpForwarding=yes -o GatewayPorts=no -o Ciphers=aes128-gcm@openssh.com \
        -o Compression=no -o MaxStartups=200 -o MaxSessions=200 -o ClientAliveInterval=0 \
        -o LogLevel=ERROR -o KexAlgorithms=curve25519-sha256 -o "Subsystem=sftp internal-sftp"
    SSHD_PID=$SPAWNED
    # shellcheck disable=SC2034 # for the sourcing script's ssh commands
    SSH_OPTS=(-F /dev/null -i "$d/user_key" -o IdentitiesOnly=yes -o BatchMode=yes
        -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR
        -o ControlMaster=no -o ControlPath=none -o Compression=no
        -o KexAlgorithms=curve25519-sha256 -c aes128-gcm@openssh.com)
    wait_listen "$SSHD_PORT" "$SSHD_PID"
}

# begin_work NAME: a fresh work directory ($WORK, removed by cleanup at exit), the exit traps and
# a random start in the private port range.
begin_work() {
    WORK=$(mktemp -d "/tmp/warren-$1.XXXXXX")
    trap cleanup EXIT
    trap 'exit 130' INT TERM
    PORT_NEXT=$((PORT_LO + RANDOM % (PORT_HI - PORT_LO)))
}

# start_iperf: (re)starts the iperf3 server on a fresh private port (IPERF_PORT, IPERF_PID).
start_iperf() {
    [[ -n $IPERF_PID ]] && kill_tree "$IPERF_PID"
    alloc_port IPERF_PORT
    spawn iperf3-server iperf3 -s -B 127.0.0.1 -p "$IPERF_PORT" --idle-timeout 60
    IPERF_PID=$SPAWNED
    wait_listen "$IPERF_PORT" "$IPERF_PID" || die "iperf3 server did not start: $(tail -3 "$WORK/iperf3-server.log")"
}

# wait_sshd_sessions: sshd's session processes outlive their client briefly; waits (up to 3 s)
# until the private sshd has none left, so the next measurement does not see them.
wait_sshd_sessions() {
    [[ -n $SSHD_PID ]] || return 0
    for _ in $(seq 30); do
        [[ -z $(descendants "$SSHD_PID") ]] && break
        sleep 0.1
    done
}

# log_tails LINES NAME...: the last LINES lines of each non-empty $WORK/NAME.log, on stderr.
log_tails() {
    local n=$1 f
    shift
    for f in "$@"; do
        f=$WORK/$f.log
        [[ -s $f ]] && { printf '  %s: ' "${f##*/}"; tail -"$n" "$f" | tr '\n' ' '; echo; }
    done >&2
}

# ---------------------------------------------------------------- hardening commands

# find_tools: sets WARREN_BIN and LOADGEN (wr_loadgen) from one build directory: each from
# $WARREN_BIN / $WR_LOADGEN when set, the other from the same build directory, else the most
# recently built build*/ or build/*/ that has both. Dies saying how to build them.
find_tools() {
    local d
    LOADGEN=${WR_LOADGEN:-}
    WARREN_BIN=${WARREN_BIN:-}
    if [[ -n $WARREN_BIN && -z $LOADGEN ]]; then
        LOADGEN=$(dirname "$WARREN_BIN")/spec/bench/wr_loadgen
    elif [[ -z $WARREN_BIN && -n $LOADGEN ]]; then
        WARREN_BIN=$(dirname "$LOADGEN")/../../warren
    elif [[ -z $WARREN_BIN ]]; then
        for d in $(ls -td "$REPO_DIR"/build*/ "$REPO_DIR"/build/*/ 2>/dev/null); do
            if [[ -x ${d}warren && -x ${d}spec/bench/wr_loadgen ]]; then
                WARREN_BIN=${d}warren
                LOADGEN=${d}spec/bench/wr_loadgen
                break
            fi
        done
    fi
    [[ -n $WARREN_BIN && -x $WARREN_BIN && -x $LOADGEN ]] || die "warren and wr_loadgen not found; build them
  (cmake -S $REPO_DIR -B build -G Ninja -DCMAKE_BUILD_TYPE=Release && cmake --build build)
or set WARREN_BIN / WR_LOADGEN"
}

# nofile_at_least N: raises this shell's open-file limit (inherited by everything it starts).
nofile_at_least() {
    local hard
    hard=$(ulimit -Hn)
    [[ $hard == unlimited ]] || (($1 <= hard)) || die "ulimit -n hard limit is $hard; need $1"
    (($(ulimit -n) >= $1)) || ulimit -n "$1"
}

# proc_fds PID: how many descriptors the process holds (NA when it is gone).
proc_fds() {
    local n
    n=$(find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l) || true
    [[ -d /proc/$1 ]] && echo "$n" || echo NA
}

# wait_until SECONDS CMD...: polls CMD every 0.1 s until it succeeds (0) or the time is up (1).
wait_until() {
    local end=$((SECONDS + $1))
    shift
    until "$@"; do
        ((SECONDS < end)) || return 1
        sleep 0.1
    done
}

# relay_stats_tap: Lua for `warren -e` in front of `serve`: every $WR_STATS_MS ms (default 250)
# the relay's stats() go to $WR_STATS_FILE as one line of KEY=VALUE, with wall=UNIX.SECONDS first.
# The relay itself is the real `warren serve`; warren serve has no stats output of its own.
relay_stats_tap() {
    cat <<'LUA'
local uv, tunnel = require("luv"), require("warren.tunnel")
local path, every = os.getenv("WR_STATS_FILE"), tonumber(os.getenv("WR_STATS_MS") or "250")
local start_relay = tunnel.relay
tunnel.relay = function(opts)
  local relay, err = start_relay(opts)
  if relay and path then
    local out = assert(io.open(path, "a"))
    local timer = uv.new_timer()
    timer:start(0, every, function()
      local st, keys = relay:stats(), {}
      for k in pairs(st) do keys[#keys + 1] = k end
      table.sort(keys)
      local sec, usec = uv.gettimeofday()
      local line = { string.format("wall=%d.%06d", sec, usec) }
      for _, k in ipairs(keys) do line[#line + 1] = k .. "=" .. tostring(st[k]) end
      out:write(table.concat(line, " "), "\n")
      out:flush()
    end)
    timer:unref()
  end
  return relay, err
end
LUA
}

# last_stats FILE: the newest line of a relay_stats_tap file (empty when none yet).
last_stats() { tail -1 "$1" 2>/dev/null || true; }

# pass_if EXPR: PASS when the awk expression holds, FAIL when not or when a figure is missing.
pass_if() {
    [[ $1 == *NA* || $1 == *n/a* ]] && { echo FAIL; return; }
    awk "BEGIN { print (($1) ? \"PASS\" : \"FAIL\") }"
}

# verdict PASS|FAIL|SKIP CRITERION FIGURES: one verdict line on stdout; FAIL sets FAILED=1 (SKIP:
# the figures are shown, but this build cannot judge them).
verdict() {
    printf '%-4s  %s  [%s]\n' "$1" "$2" "$3"
    [[ $1 != FAIL ]] || FAILED=1
}

# stop_process PID: kill_tree, and drop PID from PIDS so cleanup never signals a recycled pid.
stop_process() {
    local p keep=()
    kill_tree "$1"
    for p in "${PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

# parse_phase_args ARGS...: the options of the commands made of phases (attack.sh, chaos.sh):
# --quick sets QUICK=1, --only LIST sets ONLY (each name checked against ALL_PHASES), -h prints
# the caller's usage. The caller defines usage, die and ALL_PHASES.
parse_phase_args() {
    local p
    while (($#)); do
        case "$1" in
            --quick) QUICK=1; shift ;;
            --only) ONLY=${2:?--only needs a list}; shift 2 ;;
            -h | --help) usage; exit 0 ;;
            *) usage >&2; die "unknown argument: $1" ;;
        esac
    done
    for p in ${ONLY//,/ }; do
        [[ " ${ALL_PHASES[*]} " == *" $p "* ]] || die "unknown phase '$p' (known: ${ALL_PHASES[*]})"
    done
}

# phase_selected NAME: the phase runs (no --only, or named in it).
phase_selected() { [[ -z $ONLY || ",$ONLY," == *",$1,"* ]]; }
