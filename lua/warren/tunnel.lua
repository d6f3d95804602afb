-- Relays, clients and forwards: the objects a script or the command line builds. The C core
-- moves the bytes; this module decides where they go and keeps sessions alive.
local warren = require("warren")
local core = require("warren.core")
local guard = require("warren.guard")
local keys = require("warren.keys")
local http_proxy = require("warren.proxy")
local addr = require("warren.addr")
local log = require("warren.log")
local registry = require("warren.registry")
local reverse = require("warren.reverse")
local uv = require("luv")

local M = {}

-- Where a relay keeps the self-signed certificate it makes at first start, unless told.
local function default_certificate_file()
  local dir = (os.getenv("HOME") or ".") .. "/.warren"
  uv.fs_mkdir(dir, tonumber("700", 8)) -- fails harmlessly when it exists
  return dir .. "/relay-tls.pem"
end

-- The relay's TLS context: a certificate from files, or a self-signed one kept in a file.
local function relay_tls(opts)
  if not (opts.tls or opts.cert) then return nil end
  if (opts.cert == nil) ~= (opts.cert_key == nil) then return nil, "--cert and --cert-key go together" end
  local ctx, err = core.tls_server({ cert = opts.cert, cert_key = opts.cert_key,
    self_signed = not opts.cert and (opts.self_signed or default_certificate_file()) or nil,
    name = opts.tls_name })
  if not ctx then return nil, "TLS: " .. err end
  return ctx
end

-- Session tuning shared by relays and clients (all optional).
local function session_options(opts, t)
  t.window = opts.window
  t.session_buffer = opts.session_buffer
  t.max_streams = opts.max_streams
  t.keepalive_ms = opts.keepalive and opts.keepalive * 1000 or nil
  t.write_cap = opts.write_cap
  t.idle_timeout_ms = opts.idle_timeout and opts.idle_timeout * 1000 or nil
  t.cipher = opts.cipher -- "auto" (default), "aes-256-gcm" or "chacha20-poly1305"
  t.kcp_mode, t.kcp_mtu, t.kcp_sndwnd, t.kcp_rcvwnd = opts.kcp_mode, opts.kcp_mtu, opts.kcp_sndwnd, opts.kcp_rcvwnd
  t.congestion = opts.congestion
  return t
end

local Relay = {}
Relay.__index = Relay

-- warren.relay{listen = "127.0.0.1:8100", key = ..., on_open = fn, on_close = fn, ...}
--   tls = true: TLS on the same port too, with cert = FILE and cert_key = FILE, or else a
--       self-signed certificate kept in self_signed = FILE (default ~/.warren/relay-tls.pem,
--       made at first start, for tls_name, default "localhost"); raw clients still connect.
--   cipher = "auto" (default) | "aes-256-gcm" | "chacha20-poly1305": the frame cipher; a relay
--       given one refuses clients that do not offer it (they are told why).
--   kcp = true: KCP on the UDP port with the same number (off by default: it is one more open
--       port); kcp_mode = "normal" | "fast" | "fast2" (default) | "fast3", kcp_mtu = 1400,
--       kcp_sndwnd = kcp_rcvwnd = 1024 (segments) tune it, on both ends.
--   congestion = "bbr" | "cubic" | ...: the TCP carriers' congestion control, per connection
--       (TCP_CONGESTION; the client takes the same option), instead of the system's default.
--   on_open(host, port, info) -> true | false, reason   where a client may dial (default: anywhere;
--       an empty host means this relay's localhost). info = {addresses = {resolved...},
--       peer = "client address", user = the session's user, session = the client's session
--       handle}; the addresses are the
--       ones that will be dialled.
--   on_close(info)   info = {target, peer, bytes_up, bytes_down, duration_ms, reason}
-- Reverse tunnels: ports = {"9930-9939", ...} (the outer port pool), outer_bind = address the
--   outer ports listen on (when set, a client's BIND must match it unless allow_client_bind;
--   default: the client's BIND or all interfaces), lease = seconds (default 30),
--   max_services = per client (default 1024), max_users = users at once per service and
--   user_idle = seconds a user may stay idle, when the client sets none (defaults 256 and 600,
--   0 = no limit), hooks = {auth, register, unregister,
--   user_connect, user_close, up, down, discover} (see warren.registry); hooks.dial and
--   hooks.dial_close stand for on_open and on_close when those are not given.
-- Returns the relay (relay:port(), :stats(), :services(), :free_ports(), :add_ports(from, to),
-- :close()) or nil, err.
-- Users: users = {NAME = {key | key_file | password, ports = {...}, max_sessions = N,
--   max_streams = N}, ...} (warren.keys.resolve_users) gives the relay one key per user, next to
--   its own key (the user "default") or instead of it; a user with ports registers only there,
--   max_sessions caps its sessions at once, max_streams its -L/-D streams at once.
--   relay:set_users(users) replaces them live.
-- The relay's own key, when it has one, and the users' list for the core and the registry.
local function relay_keys(opts)
  local own
  if not opts.users or opts.key or opts.key_file or opts.password then
    local err
    own, err = keys.resolve(opts)
    if not own then return nil, err end
  end
  if not opts.users then return own, nil end
  local users, err = keys.resolve_users(opts.users, own)
  if not users then return nil, err end
  return own, users
end

function M.relay(opts)
  local own, users = relay_keys(opts)
  if not own and not users then return nil, users end
  local listen, lerr = addr.parse(opts.listen or "", { allow_zero = true, listen = true, what = "listen address" })
  if not listen then return nil, lerr end
  local reg, gerr = registry.new({
    ports = opts.ports, bind = opts.outer_bind, allow_client_bind = opts.allow_client_bind, lease = opts.lease,
    max_services = opts.max_services, max_users = opts.max_users, user_idle = opts.user_idle,
    max_users_per_address = opts.max_users_per_address, users = users,
    hooks = opts.hooks, write_cap = opts.write_cap,
  })
  if not reg then return nil, gerr end
  local tls, terr = relay_tls(opts)
  if terr then return nil, terr end
  -- -P DIR is served on this port; -P URL is a web site the bytes are passed to.
  local site_url = opts.fallback and opts.fallback:match("^%a[%w+.-]*://") and opts.fallback or nil
  local site = not site_url and opts.fallback or nil
  local relay, rerr = core.relay_server(session_options(opts, {
    tls = tls,
    site = site,
    site_url = site_url,
    host = listen.host,
    port = listen.port,
    key = not users and own or nil,
    users = users,
    on_open = guard.wrap("dial", opts.on_open or (opts.hooks and opts.hooks.dial)),
    on_close = guard.wrap("dial_close", opts.on_close or (opts.hooks and opts.hooks.dial_close)),
    on_channel = function(channel, session)
      warren.spawn(function() reg:serve(channel, session) end)
    end,
    probe_close_ms = opts.probe_close_ms,
    max_unauthenticated = opts.max_unauthenticated,
    max_unauthenticated_per_address = opts.max_unauthenticated_per_address,
    max_failed_handshakes = opts.max_failed_handshakes,
    trusted_fronts = opts.trusted_fronts,
    kcp = opts.kcp,
  }))
  if not relay then
    if rerr:find("^trusted front ") or rerr:find("^congestion control ") then return nil, rerr end
    return nil, string.format("cannot listen on %s: %s", opts.listen, rerr)
  end
  log.info("relay listening on %s%s", addr.format({ host = listen.host, port = relay:port() }),
    opts.kcp and " (TCP, and UDP for KCP)" or "")
  if tls then
    log.info("TLS on the same port too (%s); certificate %s (clients pin it with --pin)", core.versions.tls,
      tls:fingerprint())
  end
  if opts.fallback then
    log.info("fallback site: %s (the raw carrier is off on this port: clients use --tls, -w or --http)",
      opts.fallback)
  end
  if users then log.info("%d users, one key each", #users) end
  local self = setmetatable({ core = relay, registry = reg, fallback = opts.fallback, tls = tls, own_key = own,
    users = users }, Relay)
  warren.on_shutdown(function() self:close() end)
  return self
end

function Relay:port() return self.core:port() end
-- The TLS certificate's fingerprint ("sha256:..."), for clients to pin; nil without TLS.
function Relay:fingerprint() return self.tls and self.tls:fingerprint() end
-- The core's counters (sessions, -L/-D streams and bytes, handshakes) and the reverse
-- tunnels': services, and reverse_users_active/_total/_refused, reverse_bytes_up (users to
-- services) and reverse_bytes_down, the bytes counted as each user leaves.
function Relay:stats()
  local st = self.core:stats()
  local n = 0
  for _ in pairs(self.registry.services) do n = n + 1 end
  st.services = n
  for k, v in pairs(self.registry:stats()) do st["reverse_" .. k] = v end
  return st
end
function Relay:services() return self.registry:services_list() end
function Relay:free_ports() return self.registry:free_ports() end
function Relay:add_ports(from, to) return self.registry:add_ports(from, to) end
-- The live sessions: {{peer, user, ready, streams, bytes_in, bytes_out}, ...}.
function Relay:sessions() return self.core:sessions() end
-- Replaces the users (a table as the `users` option; the relay's own key stays the user
-- "default"): a user removed, or given another key, has its sessions ended; the others keep
-- theirs. Returns the number of sessions ended, or nil, err with nothing changed.
function Relay:set_users(users)
  local list, err = keys.resolve_users(users, self.own_key)
  if not list then return nil, err end
  local ended, cerr = self.core:set_users(list)
  if not ended then return nil, cerr end
  self.registry:set_users(list)
  self.users = list
  return ended
end
function Relay:close()
  self.registry:close()
  return self.core:close()
end

local Client = {}
Client.__index = Client

-- Fields the carriers set themselves, which headers = {...} may not: why, for the message.
local carrier_fields = {
  host = "is the host_header option (--host-header)",
  ["content-length"] = "frames the carrier's requests", ["transfer-encoding"] = "frames the carrier's requests",
  connection = "is the carrier's", upgrade = "is the carrier's", ["keep-alive"] = "is the carrier's",
  te = "is the carrier's", expect = "is the carrier's", ["content-type"] = "is the carrier's",
  authorization = "carries the WebSocket carrier's handshake",
  ["proxy-authorization"] = "is the proxy option's (--proxy http://USER:PASS@...)",
}

-- headers = {"Name: value", ...} for the WebSocket and HTTP carriers: nil, or an error.
local function check_headers(headers, carrier)
  if headers == nil then return nil end
  if type(headers) ~= "table" then return "headers must be a list of \"Name: value\" strings" end
  if #headers > 0 and not (carrier == "ws" or carrier == "wss" or carrier == "http" or carrier == "https") then
    return "headers go in the requests of the WebSocket and HTTP carriers (-w, --http), not " .. carrier
  end
  for _, line in ipairs(headers) do
    if type(line) ~= "string" then return "headers must be a list of \"Name: value\" strings" end
    if line:find("[\r\n%z]") then return string.format("header %q: no line breaks in a header", line) end
    local name = line:match("^([!#$%%&'*+.^_`|~%w-]+):")
    if not name then return string.format("header %q must be \"Name: value\"", line) end
    local lower = name:lower()
    local why = carrier_fields[lower] or (lower:find("^sec%-websocket%-") and "is the WebSocket carrier's")
    if why then return string.format("header %q: %s %s", line, name, why) end
  end
  return nil
end

-- The carrier a client uses: the relay address's scheme, changed by the tls = true,
-- websocket = true, http = true and kcp = true switches (goflyway's -w, --http and -K with a plain
-- host:port).
local function client_carrier(server, opts)
  local c = server.carrier
  local tls = opts.tls or c == "tls" or c == "wss" or c == "https"
  if opts.kcp or c == "kcp" then
    if tls or opts.websocket or opts.http then
      return nil, "KCP runs on UDP: it does not combine with TLS, WebSocket or HTTP"
    end
    return "kcp"
  end
  if opts.http or c == "http" or c == "https" then return tls and "https" or "http" end
  if opts.websocket or c == "ws" or c == "wss" then return tls and "wss" or "ws" end
  return tls and "tls" or "tcp"
end

-- warren.client{server = "relay:8100" | "tls://relay:443" | "wss://relay/path" |
-- "http://relay/path" | "kcp://relay:8100", key = ..., window = ..., keepalive = seconds,
-- tls = true (as tls://), websocket = true (as ws://), http = true (as http://), kcp = true (as
-- kcp://; KCP over UDP, never through a proxy; kcp_mode, kcp_mtu, kcp_sndwnd and kcp_rcvwnd as for
-- the relay), host_header = NAME (the Host field of WebSocket and HTTP requests), headers =
-- {"Name: value", ...} (more fields in every WebSocket and HTTP request, e.g. a front's token;
-- not one the carrier sets), ca = FILE |
-- pin = "sha256:...", sni = NAME, proxy = "http://[USER:PASS@]HOST:PORT" (else the
-- environment's, see warren.proxy), cipher = "auto" | "aes-256-gcm" | "chacha20-poly1305"
-- (default auto; session:stats().cipher says which)}
-- Nothing happens until client:connect().
function M.client(opts)
  local server, err = addr.parse_relay(opts.server)
  if not server then return nil, err end
  local key, kerr = keys.resolve(opts)
  if not key then return nil, kerr end
  local carrier, cerr = client_carrier(server, opts)
  if not carrier then return nil, cerr end
  local herr = check_headers(opts.headers, carrier)
  if herr then return nil, herr end
  local via, perr
  if carrier == "kcp" then
    if opts.proxy then return nil, "KCP runs on UDP: it cannot go through an HTTP proxy" end
  else
    via, perr = http_proxy.for_relay(server.host, carrier, opts)
    if perr then return nil, perr end
  end
  local tls
  if carrier == "tls" or carrier == "wss" or carrier == "https" then
    local terr
    tls, terr = core.tls_client({ ca = opts.ca, pin = opts.pin })
    if not tls then return nil, "TLS: " .. terr end
  end
  return setmetatable({
    server = server,
    carrier = carrier,
    proxy = via,
    tls = tls,
    key = key,
    opts = opts,
    forwards = {},
    waiters = {},
    entries = {},
    by_id = {},
    client_id = opts.client_id or reverse.default_client_id(),
  }, Client)
end

for name, fn in pairs(reverse.Client) do Client[name] = fn end

function Client:_session_options()
  return session_options(self.opts, { host = self.server.host, port = self.server.port, key = self.key,
    carrier = self.carrier, tls = self.tls, tls_name = self.opts.sni, path = self.server.path,
    host_header = self.opts.host_header, headers = self.opts.headers, proxy_host = self.proxy and self.proxy.host,
    proxy_port = self.proxy and self.proxy.port, proxy_auth = self.proxy and self.proxy.auth })
end

function Client:_attach(session)
  self.session = session
  for _, fwd in ipairs(self.forwards) do fwd:set_session(session) end
  local waiters = self.waiters
  self.waiters = {}
  for _, resolve in ipairs(waiters) do resolve(true) end
  self:_reverse_attached()
end

-- Keeps the session up: after a drop, reconnects with exponential backoff and full jitter. The
-- backoff starts again only after a session that lasted: one the relay ends at once (a user at
-- its max_sessions) is retried ever more slowly, not in a tight loop.
function Client:_keep_alive()
  local backoff = 0.5
  while not self.closed do
    local session = self.session
    if session then
      local since = uv.now()
      local reason = warren.await(function(resolve) session:on_closed(resolve) end)
      if self.closed then break end
      log.warn("session to %s lost: %s", addr.format(self.server), tostring(reason))
      if uv.now() - since >= 10000 then backoff = 0.5 end
      self.session = nil
      for _, fwd in ipairs(self.forwards) do fwd:set_session(nil) end
      self:_reverse_lost()
    end
    warren.sleep(math.random() * backoff * 1000)
    if self.closed then break end
    local s, err = core.session_connect(self:_session_options())
    if s then
      log.info("reconnected to %s", addr.format(self.server))
      self:_attach(s)
    else
      log.warn("cannot reach relay %s: %s", addr.format(self.server), err)
    end
    backoff = math.min(backoff * 2, 30)
  end
end

-- The session's dial reports a failed name lookup only by the resolver's text, which can read
-- like any other error: a lookup of our own, on failure only, tells the two apart. Returns the
-- message for a relay host name that does not resolve, or nil.
local function unresolvable(host, err)
  if host == "localhost" or addr.classify(host) then return nil end -- nothing to resolve
  local failure = warren.await(function(resolve)
    uv.getaddrinfo(host, nil, { socktype = "stream" }, function(e) resolve(e or false) end)
  end, 10000)
  if type(failure) ~= "string" or not failure:match("^EAI_") then return nil end
  return string.format("cannot resolve relay host %q: %s", host, err)
end

-- Opens the first session (awaits the handshake) and keeps it up afterwards.
-- Returns true, or nil, err when the relay cannot be reached or does not accept the key.
function Client:connect()
  if self.session then return true end
  local session, err, code = core.session_connect(self:_session_options())
  -- A relay under a flood makes room by resetting the oldest connections without the key; a
  -- reset before any answer is worth a few quick retries (a wrong key gets silence instead).
  local delay = 250
  for _ = 1, 4 do
    if session or code ~= "no answer" then break end
    log.warn("relay %s closed the connection before answering; retrying", addr.format(self.server))
    warren.sleep(delay * (0.5 + math.random()))
    delay = delay * 2
    session, err, code = core.session_connect(self:_session_options())
  end
  if not session then return nil, unresolvable(self.server.host, err) or err end
  log.info("connected to relay %s (%s)", addr.format(self.server), session:stats().cipher)
  self:_attach(session)
  self.keeper = warren.spawn(function() self:_keep_alive() end)
  return true
end

-- Awaits a live session (after a drop, until the reconnect succeeds).
function Client:wait_connected(timeout_ms)
  if self.session then return true end
  return warren.await(function(resolve) self.waiters[#self.waiters + 1] = resolve end, timeout_ms)
end

-- The options every local listener of this client shares (forwards and proxies): its address
-- (an empty host is 127.0.0.1), the current session and the connection options.
function Client:_listener_options(opts)
  local listen, err = addr.parse(opts.listen or "", { allow_zero = true, listen = true, what = "listen address" })
  if not listen then return nil, err end
  if listen.host == "" then listen.host = "127.0.0.1" end
  local idle_timeout = opts.idle_timeout or self.opts.idle_timeout
  return {
    host = listen.host,
    port = listen.port,
    session = self.session,
    write_cap = opts.write_cap or self.opts.write_cap,
    idle_timeout_ms = idle_timeout and idle_timeout * 1000 or nil,
    on_close = opts.on_close,
    name = opts.name, -- the tunnel's name in access records
  }
end

-- client:forward{listen = "127.0.0.1:9000", target = "127.0.0.1:5201"}: like ssh -L. An empty
-- target host means the relay's own localhost. Returns the forward (:port(), :stats(), :close(), and
-- :cut(), which closes its live connections and returns how many).
function Client:forward(opts)
  local t, err = self:_listener_options(opts)
  if not t then return nil, err end
  local target, terr = addr.parse(opts.target or "")
  if not target then return nil, "target: " .. terr end
  t.target = addr.format(target)
  local fwd, ferr = core.forward(t)
  if not fwd then return nil, string.format("cannot listen on %s: %s", opts.listen, ferr) end
  self.forwards[#self.forwards + 1] = fwd
  log.info("forwarding %s -> %s via %s", addr.format({ host = t.host, port = fwd:port() }),
    t.target, addr.format(self.server))
  return fwd
end

-- client:dynamic{listen = "127.0.0.1:1080", user = ..., password = ..., on_close = fn}: like
-- ssh -D, a SOCKS5 / SOCKS4(a) / HTTP proxy whose every connection goes, through the relay, to
-- the target its client asks for (names resolved by the relay). user and password (both or
-- neither) are required from SOCKS5 clients (RFC 1929) and HTTP clients (Basic); SOCKS4 is then
-- refused. request_timeout (seconds, default 10) bounds the request and the relay's answer.
-- Returns the proxy (:port(), :stats(), :close(), :cut()).
function Client:dynamic(opts)
  local t, err = self:_listener_options(opts)
  if not t then return nil, err end
  t.user, t.password = opts.user, opts.password
  t.request_timeout_ms = opts.request_timeout and math.ceil(opts.request_timeout * 1000) or nil
  local proxy, perr = core.dynamic(t)
  if not proxy then return nil, string.format("cannot listen on %s: %s", opts.listen, perr) end
  self.forwards[#self.forwards + 1] = proxy -- re-attached to each new session like a forward
  log.info("proxy (SOCKS5, SOCKS4, HTTP) on %s via %s%s",
    addr.format({ host = t.host, port = proxy:port() }), addr.format(self.server),
    opts.user and " (username/password required)" or "")
  return proxy
end

function Client:close()
  self.closed = true
  for _, fwd in ipairs(self.forwards) do fwd:close() end
  if self.channel then self.channel:close() end
  if self.session then self.session:close() end
  if self.keeper then self.keeper:cancel() end
end

return M
