-- Relays, clients and forwards: the objects a script or the command line builds. The C core
-- moves the bytes; this module decides where they go and keeps sessions alive.
local warren = require("warren")
local core = require("warren.core")
local keys = require("warren.keys")
local addr = require("warren.addr")
local log = require("warren.log")

local M = {}

-- Session tuning shared by relays and clients (all optional).
local function session_options(opts, t)
  t.window = opts.window
  t.max_streams = opts.max_streams
  t.keepalive_ms = opts.keepalive and opts.keepalive * 1000 or nil
  t.write_cap = opts.write_cap
  t.idle_timeout_ms = opts.idle_timeout and opts.idle_timeout * 1000 or nil
  return t
end

-- warren.relay{listen = "127.0.0.1:8100", key = ..., on_open = fn, on_close = fn, ...}
--   on_open(host, port, info) -> true | false, reason   where a client may dial (default: anywhere;
--                                                        an empty host means this relay's localhost)
--   on_close(info)   info = {target, bytes_up, bytes_down, duration_ms, reason}
-- Returns the relay (relay:port(), :stats(), :close()) or nil, err.
function M.relay(opts)
  local key, err = keys.resolve(opts)
  if not key then return nil, err end
  local listen, lerr = addr.parse(opts.listen or "", { allow_zero = true })
  if not listen then return nil, "listen: " .. lerr end
  local relay, rerr = core.relay_server(session_options(opts, {
    host = listen.host,
    port = listen.port,
    key = key,
    on_open = opts.on_open,
    on_close = opts.on_close,
    probe_close_ms = opts.probe_close_ms,
    max_unauthenticated = opts.max_unauthenticated,
  }))
  if not relay then return nil, string.format("cannot listen on %s: %s", opts.listen, rerr) end
  log.info("relay listening on %s", addr.format({ host = listen.host, port = relay:port() }))
  warren.on_shutdown(function() relay:close() end)
  return relay
end

local Client = {}
Client.__index = Client

-- warren.client{server = "relay:8100", key = ..., window = ..., keepalive = seconds}
-- Nothing happens until client:connect().
function M.client(opts)
  local server, err = addr.parse(opts.server or "", { host_required = true })
  if not server then return nil, "server: " .. err end
  local key, kerr = keys.resolve(opts)
  if not key then return nil, kerr end
  return setmetatable({
    server = server,
    key = key,
    opts = opts,
    forwards = {},
    waiters = {},
  }, Client)
end

function Client:_session_options()
  return session_options(self.opts, { host = self.server.host, port = self.server.port, key = self.key })
end

function Client:_attach(session)
  self.session = session
  for _, fwd in ipairs(self.forwards) do fwd:set_session(session) end
  local waiters = self.waiters
  self.waiters = {}
  for _, resolve in ipairs(waiters) do resolve(true) end
end

-- Keeps the session up: after a drop, reconnects with exponential backoff and full jitter.
function Client:_keep_alive()
  local backoff = 0.5
  while not self.closed do
    local session = self.session
    if session then
      local reason = warren.await(function(resolve) session:on_closed(resolve) end)
      if self.closed then break end
      log.warn("session to %s lost: %s", addr.format(self.server), tostring(reason))
      self.session = nil
      for _, fwd in ipairs(self.forwards) do fwd:set_session(nil) end
    end
    warren.sleep(math.random() * backoff * 1000)
    if self.closed then break end
    local s, err = core.session_connect(self:_session_options())
    if s then
      log.info("reconnected to %s", addr.format(self.server))
      backoff = 0.5
      self:_attach(s)
    else
      log.warn("cannot reach relay %s: %s", addr.format(self.server), err)
      backoff = math.min(backoff * 2, 30)
    end
  end
end

-- Opens the first session (awaits the handshake) and keeps it up afterwards.
-- Returns true, or nil, err when the relay cannot be reached or does not accept the key.
function Client:connect()
  if self.session then return true end
  local session, err = core.session_connect(self:_session_options())
  if not session then return nil, err end
  log.info("connected to relay %s", addr.format(self.server))
  self:_attach(session)
  self.keeper = warren.spawn(function() self:_keep_alive() end)
  return true
end

-- Awaits a live session (after a drop, until the reconnect succeeds).
function Client:wait_connected(timeout_ms)
  if self.session then return true end
  return warren.await(function(resolve) self.waiters[#self.waiters + 1] = resolve end, timeout_ms)
end

-- client:forward{listen = "127.0.0.1:9000", target = "127.0.0.1:5201"}: like ssh -L. An empty
-- target host means the relay's own localhost. Returns the forward (:port(), :stats(), :close()).
function Client:forward(opts)
  local listen, err = addr.parse(opts.listen or "", { allow_zero = true })
  if not listen then return nil, "listen: " .. err end
  local target, terr = addr.parse(opts.target or "")
  if not target then return nil, "target: " .. terr end
  if listen.host == "" then listen.host = "127.0.0.1" end
  local idle_timeout = opts.idle_timeout or self.opts.idle_timeout
  local fwd, ferr = core.forward({
    host = listen.host,
    port = listen.port,
    target = addr.format(target),
    session = self.session,
    write_cap = opts.write_cap or self.opts.write_cap,
    idle_timeout_ms = idle_timeout and idle_timeout * 1000 or nil,
    on_close = opts.on_close,
  })
  if not fwd then return nil, string.format("cannot listen on %s: %s", opts.listen, ferr) end
  self.forwards[#self.forwards + 1] = fwd
  log.info("forwarding %s -> %s via %s", addr.format({ host = listen.host, port = fwd:port() }),
    addr.format(target), addr.format(self.server))
  return fwd
end

function Client:close()
  self.closed = true
  for _, fwd in ipairs(self.forwards) do fwd:close() end
  if self.session then self.session:close() end
  if self.keeper then self.keeper:cancel() end
end

return M
