-- The relay's side of reverse tunnels: a pool of outer ports, the services registered onto them,
-- leases that keep a dropped client's ports for a grace period, discovery, and the hooks that
-- decide. Clients speak to it over a control channel (one per session); users connect to the
-- outer ports, and C carries their bytes to the registering client (core.forward), so this
-- module only sees registrations and the start and end of each user connection.
--
-- Requests on the channel: {op=, seq=, ...}; answers {seq=, ok=true, ...} or
-- {seq=, ok=false, error=CODE, reason=TEXT}. The relay also sends {op="ended", id=, reason=}
-- when a service ends on its side. runtime/PROTOCOL.md ("Reverse tunnels") has the fields.
local core = require("warren.core")
local log = require("warren.log")

local M = {}

local Registry = {}
Registry.__index = Registry

M.LEASE_DEFAULT = 30
M.MAX_SERVICES_DEFAULT = 1024
local NAME_MAX, MESSAGE_MAX = 64, 256

-- A one-shot timer that does not keep the process alive.
local function after(seconds, fn)
  local t = core.timer()
  t:start(seconds * 1000, 0, fn)
  t:unref()
  return t
end

-- Parses "9930-9939" or "9930" into from, to; nil, err for anything else.
function M.parse_range(text)
  local from, to = tostring(text):match("^%s*(%d+)%s*%-%s*(%d+)%s*$")
  if not from then
    from = tostring(text):match("^%s*(%d+)%s*$")
    to = from
  end
  from, to = tonumber(from), tonumber(to)
  if not from then return nil, string.format("bad port range %q (want FROM-TO, such as 9930-9939)", tostring(text)) end
  if from < 1 or to > 65535 then return nil, string.format("port range %s is outside 1-65535", text) end
  if from > to then return nil, string.format("port range %s runs backwards", text) end
  return from, to
end

-- opts: ports = {"9930-9939", ...}, bind = outer listen address ("" = all interfaces),
-- lease = seconds a dropped client keeps its ports (default 30), max_services = per client,
-- hooks (below), and the relay's connection options (write_cap, idle_timeout).
--
-- Hooks, all optional. Those that decide return true, or false plus a reason that reaches the
-- client (a hook that raises denies); the others only observe.
--   auth(client)                 hello from a client: client = {peer, client_id}
--   register(svc, client)        a registration: svc = {name, port (0 = any), message, max_users,
--                                max_total, ttl, idle_timeout, bind, store}
--   user_connect(svc, user)      a user reached the outer port: user = {peer}
--   user_close(svc, info)        a user left: info = {peer, bytes_up, bytes_down, duration_ms,
--                                reason}
--   up(svc), down(svc, reason)   the outer port opened / closed
--   unregister(svc, reason)      the registration ended
--   discover(list, client, what) filters what a client sees: the service list, or with
--                                what = "ports" the free ports; returns the list to show
--   tap(svc, user, direction, bytes)  opt-in data tap: the first tap_bytes (a number in the
--                                hook table, default 4096) of each direction of each user
--                                connection, direction "up" (user to service) or "down"
-- svc.store is a table shared by every hook call about one service (it survives a client's
-- reconnect). auth, register run in the client's control task and may await; user_connect and
-- user_close run on the data path and must not.
function M.new(opts)
  local self = setmetatable({
    pool = {},        -- port -> true
    sorted = {},      -- the pool's ports in order
    services = {},    -- port -> service
    by_name = {},     -- name -> service
    clients = {},     -- session -> client record
    bind = opts.bind or "",
    lease = opts.lease or M.LEASE_DEFAULT,
    max_services = opts.max_services or M.MAX_SERVICES_DEFAULT,
    hooks = opts.hooks or {},
    opts = opts,
  }, Registry)
  for _, range in ipairs(opts.ports or {}) do
    local ok, err = self:add_ports(range)
    if not ok then return nil, err end
  end
  return self
end

-- registry:add_ports(from, to) or registry:add_ports("9930-9939"): live, takes effect at once.
function Registry:add_ports(from, to)
  if to == nil then
    local f, t = M.parse_range(from)
    if not f then return nil, t end
    from, to = f, t
  else
    local f, t = M.parse_range(string.format("%s-%s", tostring(from), tostring(to)))
    if not f then return nil, t end
    from, to = f, t
  end
  for p = from, to do
    if not self.pool[p] then
      self.pool[p] = true
      self.sorted[#self.sorted + 1] = p
    end
  end
  table.sort(self.sorted) -- once per change of the pool, not per registration
  return true
end

-- Free ports in order; at most `limit` of them (registering "any" needs only the first few).
function Registry:free_ports(limit)
  local free, services = {}, self.services
  for _, p in ipairs(self.sorted) do
    if not services[p] then
      free[#free + 1] = p
      if limit and #free >= limit then break end
    end
  end
  return free
end

-- Calls a hook; a hook that raises denies (it is logged). Returns ok, reason.
function Registry:_ask(name, ...)
  local hook = self.hooks[name]
  if not hook then return true end
  local ok, allowed, reason = pcall(hook, ...)
  if not ok then
    log.error("%s hook failed (denied): %s", name, tostring(allowed))
    return false, "hook failed"
  end
  if allowed == false or allowed == nil then return false, reason or "denied" end
  return true
end

-- Hooks that only observe: errors are logged and ignored.
function Registry:_tell(name, ...)
  local hook = self.hooks[name]
  if not hook then return end
  local ok, err = pcall(hook, ...)
  if not ok then log.error("%s hook failed: %s", name, tostring(err)) end
end

-- What discovery shows of a service.
local function public_view(svc)
  local st = svc.listener:stats()
  return {
    port = svc.port, name = svc.name, message = svc.message, birth = svc.birth,
    users_online = st.active, users_served = st.accepted,
    max_users = svc.max_users, max_total = svc.max_total, deadline = svc.deadline,
    idle_timeout = svc.idle_timeout, state = svc.state, client_id = svc.client_id,
  }
end

function Registry:services_list(client)
  local list = {}
  for _, svc in pairs(self.services) do list[#list + 1] = public_view(svc) end
  table.sort(list, function(a, b) return a.port < b.port end)
  if self.hooks.discover then
    local ok, filtered = pcall(self.hooks.discover, list, client and client.info, "services")
    if ok and type(filtered) == "table" then return filtered end
    if not ok then log.error("discover hook failed: %s", tostring(filtered)) end
    return {}
  end
  return list
end

-- Ends a service: closes its outer port (live users finish on their own) and, unless the relay
-- itself is stopping (its clients will re-register with the next one), tells the client.
function Registry:_end(svc, reason, stopping)
  if svc.state == "ended" then return end
  svc.state = "ended"
  svc.listener:close()
  if self.services[svc.port] == svc then self.services[svc.port] = nil end
  if self.by_name[svc.name] == svc then self.by_name[svc.name] = nil end
  local client = self:_detach(svc)
  if client and not stopping and client.channel:is_open() then
    client.channel:send({ op = "ended", id = svc.id, reason = reason })
  end
  log.info("service %s on port %d ended: %s", svc.name, svc.port, reason)
  self:_tell("down", svc, reason)
  self:_tell("unregister", svc, reason)
end

local function check_fields(req)
  local function opt_int(v, what, min, max)
    if v == nil then return true end
    if type(v) ~= "number" or v ~= math.floor(v) or v < min or v > max then
      return false, what .. " must be an integer in " .. min .. "-" .. max
    end
    return true
  end
  if type(req.id) ~= "number" or req.id < 0 or req.id > 2 ^ 32 - 1 or req.id ~= math.floor(req.id) then
    return false, "id must be an integer"
  end
  if type(req.name) ~= "string" or req.name == "" or #req.name > NAME_MAX or req.name:find("[%c]") then
    return false, "name must be 1-" .. NAME_MAX .. " printable bytes"
  end
  if req.message ~= nil and (type(req.message) ~= "string" or #req.message > MESSAGE_MAX) then
    return false, "message must be a string of at most " .. MESSAGE_MAX .. " bytes"
  end
  if req.bind ~= nil and (type(req.bind) ~= "string" or #req.bind > 64) then
    return false, "bind must be an address"
  end
  for _, f in ipairs({
    { "outer", 0, 65535 }, { "max_users", 0, 2 ^ 31 }, { "max_total", 0, 2 ^ 53 },
    { "ttl", 0, 2 ^ 31 }, { "idle_timeout", 0, 2 ^ 31 },
  }) do
    local ok, err = opt_int(req[f[1]], f[1], f[2], f[3])
    if not ok then return false, err end
  end
  return true
end

-- The service a registration of this client would replace: its own earlier registration of the
-- same name (a reconnect, or a restarted process with the same client id).
function Registry:_own(client, name)
  local svc = self.by_name[name]
  if svc and svc.client_id == client.id then return svc end
end

-- Opens the outer port for a service; the relay listens before it answers ok.
function Registry:_listen(svc, port, bind, session)
  return core.forward({
    host = bind, port = port, target = "@svc/" .. svc.id, send_peer = true, session = session,
    max_users = svc.max_users, max_total = svc.max_total,
    idle_timeout_ms = svc.idle_timeout and svc.idle_timeout * 1000 or nil,
    write_cap = self.opts.write_cap,
    on_connect = function(peer)
      local ok, reason = self:_ask("user_connect", svc, { peer = peer })
      if not ok then log.info("user %s of %s denied: %s", peer, svc.name, tostring(reason)) end
      return ok, reason
    end,
    tap = self.hooks.tap and function(direction, bytes, peer)
      self:_tell("tap", svc, { peer = peer }, direction, bytes)
    end,
    tap_bytes = self.hooks.tap_bytes,
    on_close = function(info)
      self:_tell("user_close", svc, info)
      if svc.max_total and svc.max_total > 0 and svc.state ~= "ended" then
        local st = svc.listener:stats()
        if st.accepted >= svc.max_total and st.active == 0 then
          self:_end(svc, "served its " .. svc.max_total .. " users")
        end
      end
    end,
  })
end

function Registry:_register(client, req)
  local ok, err = check_fields(req)
  if not ok then return nil, "bad_request", err end
  local own = self:_own(client, req.name)
  local port = req.outer or 0
  if port ~= 0 then
    if not self.pool[port] then return nil, "not_in_pool", "port " .. port .. " is not in the pool" end
    local holder = self.services[port]
    if holder and holder ~= own then return nil, "port_taken", "port " .. port .. " is taken" end
  elseif own then
    port = own.port
  end
  local named = self.by_name[req.name]
  if named and named ~= own then return nil, "name_taken", "name " .. req.name .. " is taken" end
  if not own and client.count >= self.max_services then
    return nil, "quota", "at most " .. self.max_services .. " services per client"
  end
  local svc = {
    id = req.id, name = req.name, message = req.message or "", birth = os.time(),
    client = client, client_id = client.id, max_users = req.max_users, max_total = req.max_total,
    ttl = req.ttl, idle_timeout = req.idle_timeout, bind = req.bind or self.bind,
    store = own and own.store or {}, state = "up", port = port,
  }
  local allowed, reason = self:_ask("register", svc, client.info)
  if not allowed then return nil, "denied", reason end
  if own and own.port == port then
    svc = self:_take_over(own, svc, client)
  else
    local listener, lerr
    if port ~= 0 then
      listener, lerr = self:_listen(svc, port, svc.bind, client.session)
      if not listener then return nil, "port_taken", "cannot listen on port " .. port .. ": " .. tostring(lerr) end
    else
      -- The lowest free ports first; one taken by another program is skipped.
      for _, p in ipairs(self:free_ports(16)) do
        listener = self:_listen(svc, p, svc.bind, client.session)
        if listener then
          port = p
          break
        end
      end
      if not listener then return nil, "port_taken", "no free port in the pool" end
    end
    if own then self:_end(own, "replaced by a new registration") end
    svc.port, svc.listener = port, listener
    self:_add(svc, client)
  end
  self:_arm(svc)
  log.info("service %s registered on port %d by %s", svc.name, svc.port, client.info.peer)
  self:_tell("up", svc)
  return svc
end

function Registry:_add(svc, client)
  self.services[svc.port] = svc
  self.by_name[svc.name] = svc
  client.services[svc] = true
  client.count = client.count + 1
end

-- Stops the service's timers and takes it off its client's books; returns that client.
function Registry:_detach(svc)
  if svc.timer then svc.timer:close() end
  if svc.lease_timer then svc.lease_timer:close() end
  svc.timer, svc.lease_timer = nil, nil
  local client = svc.client
  if client then
    client.services[svc] = nil
    client.count = client.count - 1
  end
  return client
end

-- Our own registration again (a reconnect, or a restart with the same client id): the record,
-- its outer port and its live users stay; it now belongs to the new session. The port never
-- closes, so nobody else can take it in between.
function Registry:_take_over(old, new, client)
  self:_detach(old)
  for _, k in ipairs({ "id", "message", "client", "client_id", "max_users", "max_total", "ttl", "idle_timeout" }) do
    old[k] = new[k]
  end
  old.state = "up"
  old.listener:update({ target = "@svc/" .. old.id, max_users = old.max_users or 0, max_total = old.max_total or 0 })
  old.listener:set_session(client.session)
  self:_add(old, client)
  return old
end

-- Lifetime timer.
function Registry:_arm(svc)
  if svc.ttl and svc.ttl > 0 then
    svc.deadline = os.time() + svc.ttl
    svc.timer = after(svc.ttl, function() self:_end(svc, "lifetime over") end)
  end
end

-- The client's session ended: its services keep their ports for the lease period.
function Registry:_client_lost(client, reason)
  self.clients[client.session] = nil
  for svc in pairs(client.services) do
    if svc.state == "up" then
      svc.state = "leased"
      svc.listener:set_session(nil)
      log.info("service %s on port %d: client lost (%s); port kept for %d s", svc.name, svc.port,
        tostring(reason), self.lease)
      svc.lease_timer = after(self.lease, function()
        svc.lease_timer = nil
        self:_end(svc, "lease expired")
      end)
    end
  end
end

local handlers = {}

function handlers.hello(self, client, req)
  if type(req.client_id) ~= "string" or req.client_id == "" or #req.client_id > 128 then
    return nil, "bad_request", "client_id must be a string of 1-128 bytes"
  end
  client.id = req.client_id
  client.info.client_id = req.client_id
  local ok, reason = self:_ask("auth", client.info)
  if not ok then return nil, "denied", reason end
  client.authed = true
  return { version = 1 }
end

function handlers.register(self, client, req)
  local svc, code, reason = self:_register(client, req)
  if not svc then return nil, code, reason end
  return { port = svc.port }
end

function handlers.unregister(self, client, req)
  for svc in pairs(client.services) do
    if svc.id == req.id then
      self:_end(svc, "cancelled by the client")
      return {}
    end
  end
  return nil, "not_found", "no such service"
end

function handlers.services(self, client)
  return { services = self:services_list(client) }
end

function handlers.ports(self, client)
  local free = self:free_ports()
  if self.hooks.discover then
    local ok, filtered = pcall(self.hooks.discover, free, client.info, "ports")
    free = ok and type(filtered) == "table" and filtered or {}
  end
  return { ports = free }
end

-- Serves one client's control channel until it closes (runs as a task).
function Registry:serve(channel, session)
  local client = {
    session = session, channel = channel, services = {}, count = 0,
    info = { peer = session:peer() },
  }
  self.clients[session] = client
  while true do
    local req, err = channel:recv()
    if req == nil and not channel:is_open() then
      self:_client_lost(client, err)
      return
    end
    local reply
    if type(req) ~= "table" or type(req.op) ~= "string" then
      reply = { ok = false, error = "bad_request", reason = err or "bad message: not a request" }
    else
      local handler = handlers[req.op]
      if not handler then
        reply = { ok = false, error = "bad_request", reason = "unknown op " .. req.op:sub(1, 32) }
      elseif req.op ~= "hello" and not client.authed then
        reply = { ok = false, error = "bad_request", reason = "hello first" }
      else
        local result, code, reason = handler(self, client, req)
        if result then
          reply = result
          reply.ok = true
        else
          reply = { ok = false, error = code, reason = reason }
        end
      end
      if type(req.seq) == "number" then reply.seq = req.seq end
    end
    if not reply.ok then log.debug("control request from %s refused: %s", client.info.peer, tostring(reply.reason)) end
    channel:send(reply)
  end
end

function Registry:close()
  for _, svc in pairs(self.services) do self:_end(svc, "relay shutting down", true) end
end

return M
