-- The command line. Flags build the same objects a script would, so there is one code path.
local warren = require("warren")
local log = require("warren.log")
local addr = require("warren.addr")
local guard = require("warren.guard")
local uv = require("luv")

local M = {}

M.usage = [[
usage: warren [OPTIONS] COMMAND [ARGS...]
       warren -L [BIND:]LPORT:HOST:RPORT [-L ...] SERVER -k KEY     forward ports through a relay
       warren -D [BIND:]PORT [-D ...] SERVER -k KEY                   SOCKS5/SOCKS4/HTTP proxy
       warren -R [BIND:]OUTER:HOST:PORT --name N [-R ...] SERVER -k KEY  publish a local service
       warren [BIND]:PORT -k KEY                                       run a relay (as serve)

Commands:
  serve [BIND:]PORT       run a relay (-k/-p/--key-file give its key); a bare [BIND]:PORT with
                          no command means the same (goflyway's `:80`)
  keygen                  print a new random key for -k
  services SERVER         list the relay's reverse-tunnel services (needs the key)
  ports SERVER            list the free outer ports of the relay's pool (needs the key)
  bench handshake RELAY   open and close sessions for -d SECONDS (default 5) from -c tasks
                          (default 64) and print handshakes_per_s=N
  run SCRIPT [ARGS...]    run a Lua script as a task (it sees `arg` and `...`); a script that
                          returns a table declares a relay and/or tunnels (README: "Tunnel
                          scripts"), and SIGHUP, `warren reload` or --watch reload it
  status --control PATH   what the process on that control socket runs: tunnels, services,
                          sessions, streams, bytes (--json: as JSON)
  reload --control PATH   reload the script of the process on that control socket; exits 1 and
                          prints the error when the new script fails (the old one keeps running)
  repl                    interactive Lua prompt on the live loop (Ctrl-C cancels, Ctrl-D exits)
  repl --attach PATH      the same prompt inside the process on that control socket: its
                          relay, client, tunnels and generation by name, status() and reload();
                          on a pipe, each line is sent in turn (every line is logged there)
  version                 print the versions of warren, LuaJIT, libuv, luv and mbedTLS, and the
                          TLS carrier's library (OpenSSL's libssl when built with it, else mbedTLS)
  help                    print this text

SERVER is the relay's HOST:PORT, or a URL naming the carrier: tcp://HOST:PORT (the default, raw
TCP), tls://HOST[:PORT] (TLS; see --tls), ws://HOST[:PORT][/PATH] (WebSocket; see -w),
wss://HOST[:PORT][/PATH] (WebSocket over TLS), http://HOST[:PORT][/PATH] (HTTP requests; see
--http), https://HOST[:PORT][/PATH] or kcp://HOST:PORT (KCP over UDP; see -K). Without a port,
tls, wss and https mean 443, ws and http 80. The relay takes every TCP carrier on one port, and
KCP, when started with -K, on the UDP port with the same number.

Tunnels:
  -L SPEC                 forward a local port through the relay SERVER, like ssh -L (repeatable):
                          LPORT:HOST:RPORT or BIND:LPORT:HOST:RPORT, IPv6 in brackets; BIND
                          defaults to 127.0.0.1, * is all interfaces; an empty HOST means the
                          relay's own localhost.
                          LPORT or BIND:LPORT alone (no target) is a -D proxy on that address
  -D [BIND:]PORT          a local proxy (like ssh -D) speaking SOCKS5, SOCKS4/4a and HTTP (CONNECT
                          and http:// URLs) whose connections go out from the relay (repeatable;
                          BIND defaults to 127.0.0.1, * is all interfaces); names are resolved
                          by the relay. An http:// URL request is forwarded alone: anything
                          pipelined after it is dropped. With an
                          -L that has no target and no SERVER, -D's value is the SERVER
                          (goflyway's `-L :1080 -D server:8100`)
  --proxy-user USER:PASS  require this username/password from -D clients (SOCKS5 RFC 1929, HTTP
                          Basic); SOCKS4 clients are then refused
  -R SPEC                 publish HOST:PORT (reachable from this machine) on the relay's outer
                          port OUTER (repeatable): [BIND:]OUTER:HOST:PORT; OUTER 0 takes any free
                          port of the relay's pool (printed on stdout); BIND is the relay-side
                          listen address (default: the relay's choice; a relay started with
                          --outer-bind refuses another); an empty HOST is 127.0.0.1.
                          A client with only -R exits once all its services have ended: 0 when
                          by --ttl or --max-total, 1 when the relay refused or ended one.
                          SIGINT/SIGTERM release its ports at the relay at once
  --name NAME             the name of each -R in order (default: the -R spec)
  --message TEXT          a description of each -R in order, shown by `warren services`
  --max-users N           per -R: users at once (extras are refused, the port stays bound;
                          default: the relay's --max-users-default)
  --max-total N           per -R: users in all, then the service ends
  --ttl SECONDS           per -R: lifetime of the service
  --client-id ID          who this client is to the relay (default: the host name); a restarted
                          client with the same id takes back its own ports at once, but while
                          another live process holds them with that id, they are refused
                          (also sent by `services` and `ports`, for the relay's hooks)
  -k KEY                  pre-shared key: a `warren keygen` key, or else taken as a password.
                          Any local user can read it in `ps`: prefer --key-file or WARREN_KEY
  -p PASSWORD             pre-shared password (stretched with PBKDF2 on both ends)
  --key-file FILE         read the key (or password) from the first line of FILE
  -W BYTES                per-connection write buffer cap (default 1048576)
  --session-buffer BYTES  data one session may hold for readers that do not keep up; past it
                          its peer waits for credit (default 67108864)
  --max-buffer BYTES      data the whole process may hold in buffers; past it every tunnel
                          waits before reading more (default 268435456; 0 = no limit)
  -t SECONDS              close connections idle this long (default: never)
  --keepalive SECONDS     ping an idle session this often; the peer is dead after 3 (default 5)
  --cipher NAME           the session's cipher: auto (the default: aes-256-gcm when both ends
                          have AES instructions, else chacha20-poly1305), aes-256-gcm or
                          chacha20-poly1305. A relay given one takes only that one; a client
                          given one that the relay does not take fails with an error
  -P URL|DIR              relay: the web site everyone without the key sees on the relay's port.
                          Every HTTP request that is not a client's, and any other bytes outside
                          TLS, go to it (the raw carrier is then off on that port: clients use
                          --tls, -w or --http). DIR: its static files are served. URL (http://HOST:PORT[/PREFIX]):
                          the bytes are passed untouched to that web server and its answers back,
                          as a plain TCP forwarder would (PREFIX is put in front of request paths)
  --tls                   client: reach the relay over TLS (as a tls:// SERVER does); relay: take
                          TLS on the same port too (raw clients still connect)
  --ca FILE               client: verify the relay's certificate against these CAs (default: the
                          system's)
  --pin sha256:HEX        client: accept exactly the certificate with this fingerprint (the relay
                          prints it), such as a self-signed one
  --sni NAME              client: the name sent and verified (default: the relay's host); relay:
                          the name of its self-signed certificate (default localhost)
  --cert FILE --cert-key FILE
                          relay: the TLS certificate chain and key (PEM)
  --self-signed FILE      relay: where the self-signed certificate made at first start is kept
                          (mode 0600; default ~/.warren/relay-tls.pem)
  -w                      client: reach the relay over WebSocket (as a ws:// SERVER does; with
                          --tls, as wss://): through fronts and proxies that pass WebSocket.
                          The relay needs no switch: it takes WebSocket on its port (-w is
                          accepted there for goflyway's command lines)
  --http                  client: reach the relay with ordinary HTTP requests (as an http://
                          SERVER does; with --tls, as https://): GETs and POSTs only, through
                          proxies that refuse CONNECT, buffering fronts and CDNs. The relay
                          needs no switch. -W on the relay bounds what it keeps for such a client
  --host-header NAME      client: the Host field of WebSocket and HTTP requests (default:
                          SERVER's host)
  --header 'NAME: VALUE'  client: one more field in every WebSocket and HTTP request (-w,
                          --http), such as a token a front checks; repeatable. Not a field the
                          carrier sets (Host, Content-Length, Transfer-Encoding, Connection,
                          Upgrade, Authorization...)
  --proxy URL             client: reach the relay through this HTTP proxy: http://[USER:PASS@]
                          HOST:PORT (Basic auth); with CONNECT, except for the http carrier, whose
                          requests go to the proxy in absolute form. Without it, the http carrier
                          uses HTTP_PROXY / http_proxy from the environment, and the tls, ws, wss
                          and https carriers HTTPS_PROXY / https_proxy, except for relays
                          NO_PROXY / no_proxy lists (the raw carrier never takes one)
  -K                      client: reach the relay over KCP on UDP (as a kcp:// SERVER does), an
                          ARQ that keeps its pace on lossy links where TCP stalls; the session
                          inside is the same. Relay: also take KCP on the UDP port with the TCP
                          port's number (off without -K). Not through --proxy, not with
                          --tls, -w or --http
  --kcp-mode MODE         KCP tuning, kcptun's presets: normal, fast, fast2 (default), fast3
  --kcp-mtu BYTES         KCP datagram size (default 1400; 1200..9000)
  --kcp-sndwnd N          KCP send window in segments (default 1024; 16..32768)
  --kcp-rcvwnd N          KCP receive window in segments (default 1024; 16..32768)
  --congestion NAME       the TCP carriers' congestion control (bbr, cubic, reno...: see
                          /proc/sys/net/ipv4/tcp_available_congestion_control), set per
                          connection, client and relay, instead of the system's default; the
                          name must be in net.ipv4.tcp_allowed_congestion_control or the process
                          needs CAP_NET_ADMIN. BBR shrugs off random loss, CUBIC does not

Relay (serve):
  --ports FROM-TO         outer ports reverse tunnels may use (repeatable; none by default)
  --users FILE            one key per user, next to -k/-p/--key-file (the user "default") or
                          instead of it: a line per user, NAME KEY_FILE [FROM-TO ...]
                          [max_sessions=N] [max_streams=N] (# comments; KEY_FILE relative to
                          FILE). A user with ranges registers only there (they join the pool);
                          the others use --ports. max_sessions: sessions at once, max_streams:
                          -L/-D streams at once over its sessions (0: no limit, the default).
                          Hooks and `warren status` see each session's user
  --outer-bind ADDR       address the outer ports listen on; when given, a client's BIND must
                          be the same or absent (default: the client's BIND, else all interfaces)
  --allow-client-bind     let clients choose their BIND; --outer-bind is then only the default
  --trust-front ADDR[/BITS]
                          a front (nginx, a load balancer, a CDN's ranges) whose WebSocket
                          requests name the user in X-Forwarded-For or Forwarded: hooks and logs
                          then see the user's address (repeatable; by default nobody is trusted)
  --lease SECONDS         how long a dropped client keeps its ports (default 30)
  --max-services N        services per client (default 1024)
  --max-users-default N   users at once per service when its client sets no --max-users
                          (default 256; 0 = no limit)
  --user-idle SECONDS     close a reverse-tunnel user idle this long, when its client sets no
                          idle timeout (default 600; 0 = never)
  --max-users-per-address N
                          users one address may hold at once on an outer port; its further
                          users are refused, others still get in; a user that has finished
                          sending no longer counts (default 64; 0 = no limit)
  --max-failed-handshakes N
                          failed handshakes one address may cause per minute before its
                          connections are the first dropped when the relay is full (default 32;
                          0 = no tally). Nobody is refused for it: a real client may share the
                          address. The relay holds at most 1024 connections that have not shown
                          the key, 64 per address; past that the oldest are dropped, never the
                          newest
  --hooks FILE            a Lua file returning hooks: auth, register, unregister, user_connect,
                          user_close, up, down, discover, and dial (where -L/-D may go);
                          see examples/hooks.lua and examples/acl.lua

Observing:
  --access-log FILE|-     with serve, -L/-D/-R and run: one record per tunnelled connection as it
                          ends (time, tunnel, user, peer, target, bytes_up, bytes_down,
                          duration_ms, reason) appended to FILE, or stdout for -; written off the
                          event loop, dropped and counted (never waited for) if the disk falls
                          behind by more than 1 MiB
  --access-log-format F   text (default: key=value pairs, logfmt) or json (one object a line)
  --metrics ADDR          serve Prometheus metrics at http://ADDR/metrics: [HOST:]PORT, HOST
                          defaults to 127.0.0.1 (other hosts must be named, such as 0.0.0.0:9100)

Control:
  --control PATH          with run, serve, -L/-D/-R: listen on the Unix socket PATH (mode 0600,
                          only this user or root is served) for status and reload
  --watch                 with run: reload the script whenever its file changes
  --json                  with status: print JSON

Options:
  -e CODE                 run CODE before the command (repeatable); may be used alone
  -v                      more logging: -v debug, -v -v trace
  -q                      log errors only
  --log-format FORMAT     text (default) or json, one record per line on stderr
  -h, --help              print this text

Signals: SIGINT/SIGTERM shut down gracefully (twice: at once); SIGHUP reloads a declared script
         (or runs the handler a script set with warren.on_reload; the command-line tunnels have
         none: it is logged).
Exit status: 0 success or a graceful shutdown; 1 a runtime failure (the relay cannot be reached
             or refuses the key, an address is in use...); 2 a usage error on the command line;
             130 / 143 SIGINT / SIGTERM while still connecting.
Environment: WARREN_KEY is the key when no -k, -p or --key-file is given;
             WARREN_LUA_DIR overrides where the Lua library is loaded from;
             WARREN_HISTORY sets the REPL history file (default ~/.warren_history).
]]

local function usage_error(msg)
  io.stderr:write("warren: ", msg, "\n\n", M.usage)
  return nil, 2
end

-- Flags that take a value, and where it goes.
local valued = {
  ["-e"] = "chunks", ["-L"] = "forwards", ["-D"] = "dynamics",
  ["-k"] = "key", ["-p"] = "password", ["--key-file"] = "key_file",
  ["--log-format"] = "log_format", ["-W"] = "write_cap", ["-t"] = "idle_timeout",
  ["--keepalive"] = "keepalive", ["-d"] = "duration", ["-c"] = "concurrency",
  ["--proxy-user"] = "proxy_user", ["-P"] = "fallback",
  ["-R"] = "reverses", ["--name"] = "names", ["--message"] = "messages",
  ["--max-users"] = "max_users", ["--max-total"] = "max_total", ["--ttl"] = "ttl",
  ["--client-id"] = "client_id", ["--ports"] = "ports", ["--users"] = "users_file", ["--outer-bind"] = "outer_bind",
  ["--lease"] = "lease", ["--max-services"] = "max_services", ["--hooks"] = "hooks_file",
  ["--max-failed-handshakes"] = "max_failed_handshakes",
  ["--max-users-default"] = "max_users_default", ["--user-idle"] = "user_idle",
  ["--max-users-per-address"] = "max_users_per_address",
  ["--session-buffer"] = "session_buffer", ["--max-buffer"] = "max_buffer",
  ["--cert"] = "cert", ["--cert-key"] = "cert_key", ["--self-signed"] = "self_signed",
  ["--ca"] = "ca", ["--pin"] = "pin", ["--sni"] = "sni", ["--host-header"] = "host_header",
  ["--header"] = "headers",
  ["--proxy"] = "proxy", ["--trust-front"] = "trusted_fronts", ["--control"] = "control",
  ["--attach"] = "attach", ["--cipher"] = "cipher",
  ["--kcp-mode"] = "kcp_mode", ["--kcp-mtu"] = "kcp_mtu", ["--kcp-sndwnd"] = "kcp_sndwnd",
  ["--kcp-rcvwnd"] = "kcp_rcvwnd", ["--congestion"] = "congestion",
  ["--access-log"] = "access_log", ["--access-log-format"] = "access_log_format", ["--metrics"] = "metrics",
}
local repeatable = { chunks = true, forwards = true, dynamics = true, reverses = true, names = true,
  messages = true, ports = true, trusted_fronts = true, headers = true }
local numeric = { write_cap = true, idle_timeout = true, keepalive = true, duration = true, concurrency = true,
  max_users = true, max_total = true, ttl = true, lease = true, max_services = true,
  max_failed_handshakes = true, max_users_default = true, user_idle = true, session_buffer = true,
  max_users_per_address = true,
  max_buffer = true, kcp_mtu = true, kcp_sndwnd = true, kcp_rcvwnd = true }
local commands_with_script = { run = true }

-- -P URL|DIR: http://host:port[/path] or an existing directory.
local function check_fallback(v)
  local authority = v:match("^http://([^/]*)")
  if authority then
    local a = addr.parse(authority, { host_required = true })
    if a and not v:match("^http://[^/]*/.*[%s%c?#]") then return true end
    return nil, "-P URL must be http://HOST:PORT[/PATH], not " .. v
  end
  if v:match("^%a[%w+.-]*:") then return nil, "-P URL must be http://HOST:PORT[/PATH], not " .. v end
  local st = uv.fs_stat(v)
  if not st or st.type ~= "directory" then return nil, "-P " .. v .. ": no such directory" end
  return true
end

-- Parses argv into options. Flags may come before or after positional arguments (as with ssh
-- and goflyway), except after `run SCRIPT`, where the rest belongs to the script.
-- Returns the options, or nil and an exit code after printing the problem.
function M.parse(argv)
  local opts = { chunks = {}, forwards = {}, dynamics = {}, reverses = {}, names = {}, messages = {},
    ports = {}, trusted_fronts = {}, headers = {}, verbosity = 0, log_format = "text", args = {} }
  local positional = {}
  local i = 1
  while i <= #argv do
    local a = argv[i]
    local dest = valued[a]
    if dest then
      local v = argv[i + 1]
      if not v then return usage_error(a .. " needs a value") end
      if numeric[dest] then
        v = tonumber(v)
        if not v or v < 0 then return usage_error(a .. " needs a number >= 0") end
      end
      if repeatable[dest] then table.insert(opts[dest], v) else opts[dest] = v end
      i = i + 1
    elseif a == "-v" then
      opts.verbosity = opts.verbosity + 1
    elseif a == "-q" then
      opts.quiet = true
    elseif a == "--allow-client-bind" then
      opts.allow_client_bind = true
    elseif a == "--tls" then
      opts.tls = true
    elseif a == "-w" then
      opts.websocket = true
    elseif a == "--http" then
      opts.http = true
    elseif a == "-K" then
      opts.kcp = true
    elseif a == "--watch" or a == "--json" then
      opts[a:sub(3)] = true
    elseif a == "-h" or a == "--help" then
      opts.help = true
    elseif a:sub(1, 1) == "-" and a ~= "-" then
      return usage_error("unknown option " .. a)
    else
      positional[#positional + 1] = a
      if commands_with_script[positional[1]] and #positional == 2 then
        for j = i + 1, #argv do positional[#positional + 1] = argv[j] end
        break
      end
    end
    i = i + 1
  end
  if opts.log_format ~= "text" and opts.log_format ~= "json" then
    return usage_error("--log-format takes text or json")
  end
  if opts.access_log_format and opts.access_log_format ~= "text" and opts.access_log_format ~= "json" then
    return usage_error("--access-log-format takes text or json")
  end
  if opts.access_log_format and not opts.access_log then
    return usage_error("--access-log-format goes with --access-log FILE")
  end
  if opts.metrics then
    local _, merr = require("warren.metrics").parse_address(opts.metrics)
    if merr then return usage_error("--metrics: " .. merr) end
  end
  local ciphers = { auto = true, ["aes-256-gcm"] = true, ["chacha20-poly1305"] = true }
  if opts.cipher and not ciphers[opts.cipher] then
    return usage_error("--cipher takes auto, aes-256-gcm or chacha20-poly1305")
  end
  if opts.proxy then
    local ok, err = require("warren.proxy").parse(opts.proxy)
    if not ok then return usage_error(err) end
  end
  local kcp_modes = { normal = true, fast = true, fast2 = true, fast3 = true }
  if opts.kcp_mode and not kcp_modes[opts.kcp_mode] then
    return usage_error("--kcp-mode takes normal, fast, fast2 or fast3")
  end
  if opts.kcp_mtu and (opts.kcp_mtu < 1200 or opts.kcp_mtu > 9000) then
    return usage_error("--kcp-mtu takes 1200..9000")
  end
  for _, w in ipairs({ "kcp_sndwnd", "kcp_rcvwnd" }) do
    if opts[w] and (opts[w] < 16 or opts[w] > 32768) then
      return usage_error("--" .. w:gsub("_", "-") .. " takes 16..32768")
    end
  end
  if opts.proxy_user and not opts.proxy_user:match("^[^:]+:.") then
    return usage_error("--proxy-user takes USER:PASS")
  end
  if opts.fallback then
    local ok, err = check_fallback(opts.fallback)
    if not ok then return usage_error(err) end
  end
  if opts.help then
    opts.command = "help"
  elseif #opts.forwards > 0 or #opts.dynamics > 0 or #opts.reverses > 0 then
    opts.command = "forward"
    opts.args = positional
  elseif positional[1] and addr.parse(positional[1], { allow_zero = true, listen = true }) then
    opts.command = "serve" -- goflyway's `:80`: a listen address alone runs a relay
    opts.args = positional
  elseif positional[1] then
    opts.command = table.remove(positional, 1)
    opts.args = positional
  elseif #opts.chunks == 0 then
    return usage_error("no command given")
  end
  return opts
end

local function configure_logging(opts)
  if opts.quiet then
    log.set_level("error")
  elseif opts.verbosity == 1 then
    log.set_level("debug")
  elseif opts.verbosity >= 2 then
    log.set_level("trace")
  end
  if opts.log_format == "json" then
    log.set_sinks({ log.stream_sink(log.format_json, io.stderr) })
  end
end

local function run_chunk(fn, ...)
  return fn(...)
end

local function fail(msg)
  io.stderr:write("warren: ", msg, "\n")
  return 1
end

-- -k, -p or --key-file, else WARREN_KEY (the environment, unlike arguments, is not shown by ps).
local function key_options(opts)
  local t = { key = opts.key, password = opts.password, key_file = opts.key_file }
  local env = os.getenv("WARREN_KEY")
  if not (t.key or t.password or t.key_file) and env ~= "" then t.key = env end
  return t
end

-- Commands that need the key, and the usage message when it is missing or given twice.
local keyed = { serve = true, forward = true, services = true, ports = true, bench = true }
local function key_problem(opts)
  local n = 0
  for _ in pairs(key_options(opts)) do n = n + 1 end
  if n == 0 then return "a key is required: -k KEY, -p PASSWORD, --key-file FILE or WARREN_KEY" end
  if n > 1 then return "give only one of -k, -p and --key-file" end
end

-- A relay address the command line names: a usage message when it is malformed.
local function relay_address_problem(server)
  local _, err = addr.parse_relay(server)
  return err
end

-- Until a command is set up there is nothing to shut down gracefully: SIGINT and SIGTERM exit at
-- once with 128 + the signal's number, so that an interrupted command never reports success.
-- Returns the function that puts the graceful handlers back.
local function exit_on_signals()
  local int = warren.on_signal("sigint", function() warren.exit(130) end)
  local term = warren.on_signal("sigterm", function() warren.exit(143) end)
  return function()
    warren.on_signal("sigint", int)
    warren.on_signal("sigterm", term)
  end
end

local function tunnel_options(opts, t)
  -- TLS: a relay reads tls/cert/cert_key/self_signed/sni, a client tls/ca/pin/sni.
  t.tls, t.cert, t.cert_key, t.self_signed = opts.tls, opts.cert, opts.cert_key, opts.self_signed
  t.ca, t.pin, t.sni, t.tls_name = opts.ca, opts.pin, opts.sni, opts.sni
  t.websocket, t.http, t.host_header, t.proxy = opts.websocket, opts.http, opts.host_header, opts.proxy
  t.headers = opts.headers[1] and opts.headers or nil
  t.kcp, t.kcp_mode, t.kcp_mtu = opts.kcp, opts.kcp_mode, opts.kcp_mtu
  t.kcp_sndwnd, t.kcp_rcvwnd = opts.kcp_sndwnd, opts.kcp_rcvwnd
  t.congestion = opts.congestion
  -- The buffer budget belongs to the process: every relay and client applies it.
  if opts.max_buffer then require("warren.core").buffers(opts.max_buffer) end
  t.session_buffer = opts.session_buffer and opts.session_buffer > 0 and opts.session_buffer or nil
  t.write_cap = opts.write_cap
  t.idle_timeout = opts.idle_timeout and opts.idle_timeout > 0 and opts.idle_timeout or nil
  t.keepalive = opts.keepalive and opts.keepalive > 0 and opts.keepalive or nil
  t.cipher = opts.cipher
  return t
end

-- --access-log FILE: records of every tunnelled connection of this process, from the start.
local function open_access_log(opts)
  if not opts.access_log then return true end
  local ok, err = require("warren.core").access_log({ path = opts.access_log, format = opts.access_log_format })
  if not ok then return nil, string.format("--access-log %s: %s", opts.access_log, err) end
  return true
end

-- --metrics ADDR: the Prometheus endpoint for what a command built. Returns nil, or the exit
-- status after closing what was built when it cannot listen.
local function metrics_endpoint(opts, generation)
  if not opts.metrics then return nil end
  local server, err = require("warren.metrics").serve(opts.metrics, function() return generation end)
  if server then
    warren.on_shutdown(server.close)
    return nil
  end
  fail(err)
  warren.exit(1)
  return 1
end

-- --control PATH: the control socket for what a command built (a generation: warren.declare).
-- When it cannot listen, what was built is closed and the exit status is returned.
local function control_socket(opts, generation)
  if not opts.control then return nil end
  local control = require("warren.control")
  local ok, err = control.serve(opts.control, control.source(generation))
  if ok then return nil end
  fail(err)
  warren.exit(1)
  return 1
end

local commands = {}

function commands.keygen(args)
  if #args > 0 then
    usage_error("keygen takes no arguments")
    return 2
  end
  local key, err = require("warren.keys").generate()
  if not key then return fail(err) end
  io.stdout:write(key, "\n")
  return 0
end

function commands.bench(args, opts)
  if args[1] ~= "handshake" or #args ~= 2 then
    usage_error("bench handshake RELAY is the only benchmark built in")
    return 2
  end
  local t = key_options(opts)
  t.server, t.seconds, t.concurrency = args[2], opts.duration, opts.concurrency
  local r, err = require("warren.bench").handshakes(t)
  if not r then return fail(err) end
  io.stdout:write(string.format("handshakes=%d failed=%d seconds=%.2f handshakes_per_s=%.0f\n",
    r.handshakes, r.failed, r.seconds, r.per_second))
  if r.error then io.stderr:write("warren: last failure: ", r.error, "\n") end
  return r.handshakes > 0 and 0 or 1
end

function commands.serve(args, opts)
  if #args ~= 1 then
    usage_error("serve needs one listen address, such as 127.0.0.1:8100")
    return 2
  end
  local _, aerr = addr.parse(args[1], { allow_zero = true, listen = true, what = "listen address" })
  if aerr then
    usage_error(aerr)
    return 2
  end
  for _, range in ipairs(opts.ports or {}) do
    local ok, rerr = require("warren.registry").parse_range(range)
    if not ok then
      usage_error("--ports: " .. rerr)
      return 2
    end
  end
  local t = tunnel_options(opts, opts.users_file and { key = opts.key, password = opts.password,
    key_file = opts.key_file } or key_options(opts)) -- with --users, WARREN_KEY is no user of its own
  if opts.users_file then
    local users, uerr = require("warren.keys").read_users(opts.users_file)
    if not users then return fail("--users " .. uerr) end
    t.users = users
  end
  t.listen = args[1]
  t.fallback = opts.fallback
  t.ports, t.outer_bind, t.lease, t.max_services = opts.ports, opts.outer_bind, opts.lease, opts.max_services
  t.allow_client_bind, t.max_users, t.user_idle = opts.allow_client_bind, opts.max_users_default, opts.user_idle
  t.max_failed_handshakes = opts.max_failed_handshakes
  t.trusted_fronts = opts.trusted_fronts
  t.max_users_per_address = opts.max_users_per_address
  if opts.hooks_file then
    local chunk, lerr = loadfile(opts.hooks_file)
    if not chunk then return fail(lerr) end
    guard.interpreted(chunk)
    local ok, hooks = pcall(chunk)
    if not ok or type(hooks) ~= "table" then
      return fail(string.format("--hooks %s: %s", opts.hooks_file,
        ok and "must return a table of hooks" or tostring(hooks)))
    end
    t.hooks = hooks
  end
  local relay, err = require("warren.tunnel").relay(t)
  if not relay then return fail(err) end
  local generation = require("warren.declare").adopt({ relay = relay })
  return metrics_endpoint(opts, generation) or control_socket(opts, generation)
end

-- -R specs with their --name/--message, in order, checked as a script's tunnels are
-- (warren.declare). Returns a list or nil, message.
local function reverse_specs(opts)
  local list = {}
  for i, spec in ipairs(opts.reverses) do
    local r, err = require("warren.declare").tunnel(opts.names[i] or spec, { R = spec, message = opts.messages[i],
      max_users = opts.max_users, max_total = opts.max_total, ttl = opts.ttl })
    if not r then return nil, err end
    list[i] = r
  end
  if #opts.names > #list then return nil, "more --name than -R" end
  return list
end

-- How a -R service may end having done what it was asked (or been told to stop).
local normal_ends = { ttl = true, max_total = true, released = true }

-- A client with only -R services has nothing left to do once they have all ended: it exits,
-- with status 1 and the reason when one ended otherwise than by its own limits (refused at a
-- re-registration, its port given away...).
local function exit_when_ended(client, entries)
  local code = 0
  for _, entry in ipairs(entries) do
    local reason = entry:wait()
    if normal_ends[entry.end_code] then
      log.info("service %s ended: %s", entry.name, tostring(reason))
    else
      io.stderr:write(string.format("warren: service %s ended: %s\n", entry.name, tostring(reason)))
      code = 1
    end
  end
  client:close()
  warren.exit(code)
end

-- -L and -D (and goflyway's forms of them): one client, its forwards and its proxies.
function commands.forward(args, opts)
  local specs, proxies = {}, {}
  for _, spec in ipairs(opts.forwards) do
    local f, err = addr.parse_forward(spec, "-L")
    if not f then
      usage_error(err)
      return 2
    end
    if f.target then specs[#specs + 1] = f else proxies[#proxies + 1] = f.listen end
  end
  local dynamics, server = opts.dynamics, args[1]
  if #args == 0 and #proxies > 0 and #dynamics == 1 then
    -- goflyway's `-L :1080 -D SERVER`: -L names the proxy's address, -D the relay
    server, dynamics = dynamics[1], {}
  end
  if #args > 1 or not server then
    usage_error("-L and -D need the relay's address, such as 127.0.0.1:8100")
    return 2
  end
  local serr = relay_address_problem(server)
  if serr then
    usage_error(serr)
    return 2
  end
  for _, spec in ipairs(dynamics) do
    local f, err = addr.parse_forward(spec, "-D")
    if not f or f.target then
      usage_error(err or "-D takes [BIND:]PORT, not " .. spec)
      return 2
    end
    proxies[#proxies + 1] = f.listen
  end
  if opts.fallback then
    usage_error("-P is for the relay (warren serve, or warren :PORT)")
    return 2
  end
  local reverses, rerr = reverse_specs(opts)
  if not reverses then
    usage_error(rerr)
    return 2
  end
  local user, password
  if opts.proxy_user then user, password = opts.proxy_user:match("^([^:]+):(.+)$") end
  -- The forwards and proxies as a script would declare them, named by their flags.
  local declare = require("warren.declare")
  local planned, tunnels = {}, {}
  local function plan(name, t)
    while tunnels[name] do name = name .. "'" end
    local spec = assert(declare.tunnel(name, t)) -- parsed above: cannot fail
    tunnels[name] = true
    planned[#planned + 1] = spec
  end
  for _, f in ipairs(specs) do
    plan("-L " .. addr.format(f.listen), { L = addr.format(f.listen) .. ":" .. addr.format(f.target) })
  end
  for _, listen in ipairs(proxies) do
    plan("-D " .. addr.format(listen), { D = addr.format(listen), user = user, password = password })
  end
  local t = tunnel_options(opts, key_options(opts))
  t.server = server
  t.client_id = opts.client_id
  local restore_signals = exit_on_signals()
  local client, err = require("warren.tunnel").client(t)
  if not client then return fail(err) end
  local ok, cerr = client:connect()
  if not ok then
    return fail(cerr:find("^cannot resolve") and cerr or string.format("cannot connect to relay %s: %s", server, cerr))
  end
  local opened, entries = {}, {}
  for _, r in ipairs(reverses) do planned[#planned + 1] = r end
  for _, spec in ipairs(planned) do
    local obj, oerr = declare.open(client, spec)
    if not obj then
      client:release()
      client:close()
      return fail(oerr)
    end
    opened[spec.name] = { spec = spec, obj = obj }
    if spec.kind == "R" then
      entries[#entries + 1] = obj
      io.stdout:write(string.format("%s: relay port %d -> %s\n", obj.name, obj.port, spec.inner))
      io.stdout:flush()
    end
  end
  restore_signals()
  warren.on_shutdown(function()
    client:release() -- the relay frees the ports now instead of keeping them for the lease
    client:close()
  end)
  local generation = declare.adopt({ client = client, tunnels = opened })
  local control_failed = metrics_endpoint(opts, generation) or control_socket(opts, generation)
  if control_failed then return control_failed end
  if #specs == 0 and #proxies == 0 then warren.spawn(exit_when_ended, client, entries) end
end

-- "9930-9935, 9937" from a sorted list of ports.
local function port_ranges(ports)
  local out, i = {}, 1
  while ports[i] do
    local j = i
    while ports[j + 1] == ports[j] + 1 do j = j + 1 end
    out[#out + 1] = i == j and tostring(ports[i]) or (ports[i] .. "-" .. ports[j])
    i = j + 1
  end
  return table.concat(out, ", ")
end

local function duration(seconds)
  if seconds < 120 then return string.format("%ds", seconds) end
  if seconds < 7200 then return string.format("%dm", math.floor(seconds / 60)) end
  return string.format("%dh", math.floor(seconds / 3600))
end

-- Prints rows as aligned columns, the relay's text escaped so that it cannot act on the terminal.
local function print_table(header, rows)
  table.insert(rows, 1, header)
  for _, line in ipairs(require("warren.pretty").columns(rows)) do io.stdout:write(line, "\n") end
end

local function discovery(args, opts, what)
  if #args ~= 1 then
    usage_error(what .. " needs the relay's address, such as 127.0.0.1:8100")
    return nil
  end
  local serr = relay_address_problem(args[1])
  if serr then
    usage_error(serr)
    return nil
  end
  if opts.verbosity == 0 and not opts.quiet then log.set_level("warn") end -- the table is the output
  local t = tunnel_options(opts, key_options(opts))
  t.server, t.client_id = args[1], opts.client_id
  local restore_signals = exit_on_signals()
  local result, err = require("warren.reverse").ask(t, what == "services" and "active_services" or "available_ports")
  restore_signals()
  if not result then return nil, fail(err) end
  return result
end

function commands.services(args, opts)
  local list, code = discovery(args, opts, "services")
  if not list then return code or 2 end
  local now = os.time()
  local rows = {}
  -- What a broken relay sends instead of a number is left out rather than computed with.
  local function number(v) return type(v) == "number" and v or nil end
  for _, s in ipairs(list) do
    local max_users, max_total, deadline = number(s.max_users), number(s.max_total), number(s.deadline)
    local limits = {}
    if max_users and max_users > 0 then limits[#limits + 1] = "users<=" .. max_users end
    if max_total and max_total > 0 then limits[#limits + 1] = "total<=" .. max_total end
    if deadline then limits[#limits + 1] = "ends in " .. duration(math.max(0, deadline - now)) end
    rows[#rows + 1] = { tostring(s.port), tostring(s.name), tostring(s.state or ""), tostring(s.users_online),
      tostring(s.users_served), duration(math.max(0, now - (number(s.birth) or now))),
      #limits > 0 and table.concat(limits, " ") or "-", tostring(s.message or "") }
  end
  print_table({ "PORT", "NAME", "STATE", "ONLINE", "SERVED", "AGE", "LIMITS", "MESSAGE" }, rows)
  return 0
end

function commands.ports(args, opts)
  local ports, code = discovery(args, opts, "ports")
  if not ports then return code or 2 end
  io.stdout:write(#ports > 0 and port_ranges(ports) or "(no free port)", "\n")
  return 0
end

function commands.help()
  io.stdout:write(M.usage)
  return 0
end

function commands.version()
  local v = warren.versions
  io.stdout:write(string.format("warren %s\n%s\nlibuv %s\nluv %s\nmbedTLS %s\nTLS carrier: %s\n",
    v.warren, v.luajit, v.libuv, v.luv, v.mbedtls, v.tls))
  return 0
end

function commands.run(args, opts)
  local script = args[1]
  if not script then
    usage_error("run needs a script")
    return 2
  end
  local fn, err = loadfile(script)
  if not fn then
    io.stderr:write("warren: ", err, "\n")
    return 1
  end
  local script_args = { [0] = script }
  for i = 2, #args do script_args[i - 1] = args[i] end
  _G.arg = script_args
  local declared = run_chunk(fn, unpack(script_args))
  if declared == nil then
    if opts.watch or opts.control or opts.metrics then
      return fail("--watch, --control and --metrics need a script that returns a table")
    end
    return
  end
  local generation, derr = require("warren.declare").run(declared, script, script_args)
  if not generation then return fail(script .. ": " .. derr) end
  if opts.watch then generation:watch() end
  return metrics_endpoint(opts, generation) or control_socket(opts, generation)
end

-- status and reload: ask the process on a control socket.
local function ask_control(args, opts, request)
  if #args > 0 or not opts.control then
    usage_error(request:match("%a+") .. " needs --control PATH and nothing else")
    return 2
  end
  local ok, text = require("warren.control").ask(opts.control, request)
  if ok == nil then return fail(text) end
  io.stdout:write(ok and text or "")
  if not ok then io.stderr:write("warren: ", text) end
  return ok and 0 or 1
end

function commands.status(args, opts)
  return ask_control(args, opts, opts.json and "status json" or "status")
end

function commands.reload(args, opts)
  return ask_control(args, opts, "reload")
end

function commands.repl(args, opts)
  if #args > 0 then
    usage_error("repl takes no arguments")
    return 2
  end
  local ok, err
  if opts.attach then
    ok, err = require("warren.control").attach(opts.attach)
  else
    ok, err = require("warren.repl").run()
  end
  if not ok then
    io.stderr:write("warren: ", err, "\n")
    return 1
  end
  warren.exit(0)
  return 0
end

function M.main(...)
  local opts, code = M.parse({ ... })
  if not opts then return code end
  configure_logging(opts)
  local logged, lerr = open_access_log(opts)
  if not logged then return fail(lerr) end
  warren.install_default_signals()
  for _, chunk in ipairs(opts.chunks) do
    local fn, err = loadstring(chunk, "=(command line)")
    if not fn then
      io.stderr:write("warren: ", err, "\n")
      return 1
    end
    run_chunk(fn)
  end
  if not opts.command then return 0 end
  local command = commands[opts.command]
  if not command then
    usage_error("unknown command " .. opts.command)
    return 2
  end
  local kerr = keyed[opts.command] and not (opts.command == "serve" and opts.users_file) and key_problem(opts)
  if kerr then
    usage_error(kerr)
    return 2
  end
  return command(opts.args, opts)
end

return M
