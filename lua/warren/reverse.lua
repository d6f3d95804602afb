-- The client's side of reverse tunnels: registering inner services onto a relay's outer ports,
-- keeping them registered across reconnects, and discovery. These are methods of the client
-- object (warren.client); the control channel to the relay is opened on first use.
--
--   local entry, err = client:register{outer = 9931 or "any", inner = ":22", name = "ssh"}
--   entry.port, entry.state          -- "registering", "active", "lost", "done"
--   entry:on_state(function(state, reason) ... end)
--   entry:wait()                      -- awaits "done"; returns its reason (entry.end_code says
--                                     -- which kind of end: "ttl", "max_total", "cancelled", ...)
--   entry:cancel()                    -- gives the port up; entry:cut() ends its users too
local warren = require("warren")
local addr = require("warren.addr")
local keys = require("warren.keys")
local log = require("warren.log")
local uv = require("luv")

local M = {}

local REQUEST_TIMEOUT_MS = 10000

local Entry = {}
Entry.__index = Entry

function Entry:_set_state(state, reason, end_code)
  if self.state == state or self.state == "done" then return end
  self.state = state
  if state == "done" then
    self.reason, self.end_code = reason, end_code
    self.client:_forget(self)
  end
  for _, fn in ipairs(self.watchers) do
    local ok, err = pcall(fn, state, reason, self)
    if not ok then log.error("entry %s state callback failed: %s", self.name, tostring(err)) end
  end
  if state == "done" then
    local waiters = self.waiters
    self.waiters = {}
    for _, resolve in ipairs(waiters) do resolve(reason) end
  end
end

-- entry:on_state(fn): fn(state, reason, entry) on every change.
function Entry:on_state(fn)
  self.watchers[#self.watchers + 1] = fn
end

-- Awaits the end of the entry (cancelled, lifetime over, lost for good); returns the reason.
function Entry:wait(timeout_ms)
  if self.state == "done" then return self.reason end
  return warren.await(function(resolve) self.waiters[#self.waiters + 1] = resolve end, timeout_ms)
end

-- Unregisters: the relay closes the outer port; users already connected go on (see cut).
function Entry:cancel()
  if self.state == "done" then return nil, "already done" end
  local client = self.client
  if client.session and client.channel then
    client:_request({ op = "unregister", id = self.id })
  end
  self:_set_state("done", "cancelled", "cancelled")
  return true
end

-- Users of the service connected through this client now: {active = N}.
function Entry:stats()
  local session = self.client.session
  return { active = session and session:service_users(self.id) or 0 }
end

-- Ends the connections of the service's users now (after a cancel: a reload's grace is over);
-- returns how many.
function Entry:cut()
  local session = self.client.session
  return session and session:cut_service(self.id) or 0
end

local Client = {}
M.Client = Client

-- Opens (once per session) the control channel and says hello; concurrent callers share it.
-- The hello carries a random instance token along with the client id: the relay lets this
-- client object take its services back at once after a reconnect, but refuses them to another
-- process that uses the same client id while this one is connected.
function Client:_control()
  if self.channel and self.channel:is_open() then return self.channel end
  if self.channel_opening then
    return warren.await(function(resolve)
      self.channel_opening[#self.channel_opening + 1] = resolve
    end, REQUEST_TIMEOUT_MS)
  end
  local ok, err = self:wait_connected(REQUEST_TIMEOUT_MS)
  if not ok then return nil, err or "not connected" end
  self.channel_opening = {}
  local session = self.session
  local ch, cerr = session:open_channel(REQUEST_TIMEOUT_MS)
  local code
  if ch then
    self.channel = ch
    self.pending = {}
    warren.spawn(function() self:_read_control(ch) end)
    self.instance = self.instance or keys.generate():sub(1, 22)
    local hello, herr, hcode = self:_send_request(ch, { op = "hello", client_id = self.client_id,
      instance = self.instance })
    if not hello then
      ch:close()
      self.channel = nil
      ch, cerr, code = nil, herr, hcode
    end
  end
  local waiting = self.channel_opening
  self.channel_opening = nil
  for _, resolve in ipairs(waiting) do resolve(ch, cerr, code) end
  return ch, cerr, code
end

-- Dispatches answers to the tasks waiting for them, and the relay's events to entries.
function Client:_read_control(ch)
  local pending = self.pending
  while true do
    local msg, err = ch:recv()
    if msg == nil and not ch:is_open() then break end
    if type(msg) ~= "table" then
      log.warn("bad control message from the relay: %s", tostring(err))
    elseif msg.seq and pending[msg.seq] then
      local resolve = pending[msg.seq]
      pending[msg.seq] = nil
      resolve(msg)
    elseif msg.op == "ended" then
      local entry = self.by_id[msg.id]
      if entry then
        log.info("service %s on relay port %s ended: %s", entry.name, tostring(entry.port), tostring(msg.reason))
        entry:_set_state("done", msg.reason, msg.code)
      end
    end
  end
  for seq, resolve in pairs(pending) do
    pending[seq] = nil
    resolve(nil, "connection to the relay lost")
  end
  if self.channel == ch then self.channel = nil end
end

-- Sends a request and awaits its answer: the answer table, or nil, reason, code. An answer
-- of rate_limited is waited out and the request sent again, up to the request timeout; after
-- that the relay's reason is returned.
function Client:_request(msg)
  local deadline = uv.now() + REQUEST_TIMEOUT_MS
  while true do
    local ch, err, code = self:_control()
    if not ch then return nil, err, code end
    local reply, rerr, rcode, refusal = self:_send_request(ch, msg)
    if rcode ~= "rate_limited" then return reply, rerr, rcode end
    local wait_ms = math.max(10, tonumber(refusal.retry_after) or 100)
    if uv.now() + wait_ms > deadline then return nil, "relay busy: " .. tostring(rerr), rcode end
    warren.sleep(wait_ms)
  end
end

function Client:_send_request(ch, msg, timeout_ms)
  self.seq = (self.seq or 0) + 1
  msg.seq = self.seq
  local ok, serr = ch:send(msg)
  if not ok then return nil, serr end
  local pending = self.pending
  local reply, rerr = warren.await(function(resolve) pending[msg.seq] = resolve end, timeout_ms or REQUEST_TIMEOUT_MS)
  if not reply then
    pending[msg.seq] = nil
    return nil, rerr
  end
  if not reply.ok then return nil, reply.reason or reply.error, reply.error, reply end
  return reply
end

function Client:_forget(entry)
  self.by_id[entry.id] = nil
  for i, e in ipairs(self.entries) do
    if e == entry then
      table.remove(self.entries, i)
      break
    end
  end
  if self.session then self.session:unexpose(entry.id) end
end

-- Asks the relay for the entry's port (again, after a reconnect: the same port).
function Client:_register_entry(entry, outer)
  local session = self.session
  if not session then return nil, "not connected" end
  session:expose(entry.id, entry.inner.host, entry.inner.port, entry.name)
  local reply, err, code = self:_request({
    op = "register", id = entry.id, outer = outer, bind = entry.bind, name = entry.name,
    message = entry.message, max_users = entry.max_users, max_total = entry.max_total,
    ttl = entry.ttl, idle_timeout = entry.idle_timeout,
  })
  if not reply then return nil, err, code end -- the entry is done or retried: either way
  entry.port = reply.port
  return true
end

local function parse_outer(outer)
  if outer == nil or outer == "any" or outer == 0 then return 0 end
  local p = tonumber(outer)
  if not p or p ~= math.floor(p) or p < 1 or p > 65535 then return nil, "outer must be a port or \"any\"" end
  return p
end

-- client:register{outer = 9931 | "any", inner = ":22", name = "ssh", message = "...",
--   max_users = N, max_total = N, ttl = seconds, idle_timeout = seconds, bind = "0.0.0.0"}
-- Awaits the relay's answer: the entry, or nil, reason, code ("not_in_pool", "port_taken",
-- "name_taken", "quota", "denied", "bad_request"). An empty inner host means 127.0.0.1.
function Client:register(opts)
  local outer, oerr = parse_outer(opts.outer)
  if not outer then return nil, oerr, "bad_request" end
  local inner, ierr = addr.parse(opts.inner or "")
  if not inner then return nil, "inner: " .. ierr, "bad_request" end
  if inner.host == "" then inner.host = "127.0.0.1" end
  if type(opts.name) ~= "string" or opts.name == "" then return nil, "a name is required", "bad_request" end
  self.next_entry = (self.next_entry or 0) + 1
  local entry = setmetatable({
    client = self, id = self.next_entry, name = opts.name, message = opts.message,
    inner = inner, bind = opts.bind, max_users = opts.max_users, max_total = opts.max_total,
    ttl = opts.ttl, idle_timeout = opts.idle_timeout, state = "registering",
    watchers = {}, waiters = {},
  }, Entry)
  if opts.on_state then entry.watchers[1] = opts.on_state end
  self.entries[#self.entries + 1] = entry
  self.by_id[entry.id] = entry
  local ok, err, code = self:_register_entry(entry, outer)
  if not ok then
    entry:_set_state("done", err, code)
    return nil, err, code
  end
  entry:_set_state("active")
  log.info("registered %s (%s) on relay port %d", entry.name, addr.format(inner), entry.port)
  return entry
end

-- After a reconnect: every entry asks for its port back (the relay kept it for the lease).
function Client:_reregister()
  for _, entry in ipairs(self.entries) do
    if entry.state ~= "done" then
      local ok, err, code = self:_register_entry(entry, entry.port or 0)
      if ok then
        log.info("re-registered %s on relay port %d", entry.name, entry.port)
        entry:_set_state("active")
      elseif self.session then
        log.warn("cannot re-register %s: %s", entry.name, tostring(err))
        entry:_set_state("done", err, code or "failed")
      end
    end
  end
end

-- client:entry("ssh") or client:entry(9931)
function Client:entry(key)
  for _, e in ipairs(self.entries) do
    if e.name == key or e.port == key then return e end
  end
end

-- What a page of each discovery list holds; anything else from a broken relay is dropped.
local item_type = { services = "table", ports = "number" }

-- Asks for every page of a discovery list (op "services" or "ports"): the whole list, or
-- nil, err.
function Client:_discover(op)
  local list, after = {}, 0
  repeat
    local reply, err = self:_request({ op = op, after = after })
    if not reply then return nil, err end
    for _, item in ipairs(type(reply[op]) == "table" and reply[op] or {}) do
      if type(item) == item_type[op] then list[#list + 1] = item end
    end
    -- pages go up the pool: a `next` that does not is a broken relay, not a reason to loop
    after = type(reply.next) == "number" and reply.next > after and reply.next or nil
  until not after
  return list
end

-- Free outer ports of the relay's pool (a list), or nil, err.
function Client:available_ports()
  return self:_discover("ports")
end

-- One free port, or nil, err.
function Client:any_port()
  local ports, err = self:available_ports()
  if not ports then return nil, err end
  if not ports[1] then return nil, "no free port in the relay's pool" end
  return ports[1]
end

-- The relay's active services: {port, name, message, birth, users_online, users_served,
-- max_users, max_total, deadline, state}, or nil, err.
function Client:active_services()
  return self:_discover("services")
end

-- Before closing: the relay ends this client's services now, so their ports go back to the
-- pool at once instead of after the lease. Awaits the relay's answer (at most timeout_ms);
-- returns true, or nil, err (the ports are then freed by the lease).
function Client:release(timeout_ms)
  local live = {}
  for _, entry in ipairs(self.entries) do
    if entry.state ~= "done" then live[#live + 1] = entry end
  end
  if #live == 0 then return true end
  local ok, err
  if self.channel and self.channel:is_open() then
    ok, err = self:_send_request(self.channel, { op = "goodbye" }, timeout_ms or 2000)
  end
  for _, entry in ipairs(live) do entry:_set_state("done", "released", "released") end
  if not ok then return nil, err or "no control channel to the relay" end
  return true
end

-- Hooks the client object calls on session changes.
function Client:_reverse_lost()
  self.channel = nil
  for _, entry in ipairs(self.entries) do
    if entry.state == "active" then entry:_set_state("lost") end
  end
end

function Client:_reverse_attached()
  if #self.entries > 0 then warren.spawn(function() self:_reregister() end) end
end

function M.default_client_id()
  return uv.os_gethostname() or "warren"
end

-- One-shot discovery: connect with the client options `opts` (server, key, client_id...), ask,
-- close.
-- method is "active_services" or "available_ports". The list, or nil, err.
function M.ask(opts, method)
  local client, err = require("warren.tunnel").client(opts)
  if not client then return nil, err end
  local ok, cerr = client:connect()
  if not ok then return nil, string.format("cannot connect to relay %s: %s", opts.server, cerr) end
  local result, rerr = client[method](client)
  client:close()
  return result, rerr
end

function M.free_ports(server, key) return M.ask({ server = server, key = key }, "available_ports") end
function M.services(server, key) return M.ask({ server = server, key = key }, "active_services") end

return M
