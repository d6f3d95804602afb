-- The relay's side of reverse tunnels: a pool of outer ports, the services registered onto them,
-- leases that keep a dropped client's ports for a grace period, discovery, and the hooks that
-- decide. Clients speak to it over a control channel (one per session); users connect to the
-- outer ports, and C carries their bytes to the registering client (core.forward), so this
-- module only sees registrations and the start and end of each user connection.
--
-- Requests on the channel: {op=, seq=, ...}; answers {seq=, ok=true, ...} or
-- {seq=, ok=false, error=CODE, reason=TEXT}. The relay also sends {op="ended", id=, reason=,
-- code=} when a service ends on its side. runtime/PROTOCOL.md ("Reverse tunnels") has the fields.
local core = require("warren.core")
local guard = require("warren.guard")
local log = require("warren.log")
local pretty = require("warren.pretty")
local uv = require("luv")

local M = {}

local Registry = {}
Registry.__index = Registry

M.LEASE_DEFAULT = 30
M.MAX_SERVICES_DEFAULT = 1024
-- Each user holds a descriptor at both ends, so a service has a ceiling unless someone sets one.
M.MAX_USERS_DEFAULT = 256
M.USER_IDLE_DEFAULT = 600 -- seconds
-- Users one address may hold at once on an outer port: a slowloris source holds its share, not
-- the service (a NAT of many real users rarely needs more at once).
M.MAX_USERS_PER_ADDRESS_DEFAULT = 64
local NAME_MAX, MESSAGE_MAX = 64, 256

-- Control requests are metered per session with a token bucket, so that one key holder cannot
-- keep the relay busy for everyone: a registration costs 1 token, a page of discovery (which
-- walks the pool and encodes up to a page of entries) much more.
M.CONTROL_RATE = 1000  -- tokens per second
M.CONTROL_BURST = 2000 -- so a client may register its 1,024 services at once
local COST = { hello = 0, goodbye = 0, services = 200, ports = 100 } -- anything else costs 1
-- Requests run one at a time per channel; this bounds how many a session has in flight.
M.CHANNELS_PER_SESSION = 4
-- Longest answers: a service entry encodes to well under 1 KiB and a port to 3 bytes, so a
-- page stays far below the 1 MiB message limit whatever the registry holds.
M.SERVICES_PAGE = 256
M.PORTS_PAGE = 4096

-- A one-shot timer that does not keep the process alive.
local function one_shot(seconds, fn)
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

-- opts: ports = {"9930-9939", ...} (the ranges every user without ranges of its own may use),
-- users = {{name =, ports = {...} or nil}, ...} (users with ranges of their own: only those;
-- warren.keys.resolve_users), bind = outer listen address (nil: the client's BIND, or all
-- interfaces), allow_client_bind = let a client's BIND differ from `bind` (default: refused),
-- lease = seconds a dropped client keeps its ports (default 30), max_services = per client,
-- max_users = users at once per service and user_idle = seconds a user may stay idle, both
-- when the client sets none (defaults 256 and 600; 0 = no limit), max_users_per_address = users
-- one address may hold at once on any outer port (default 64; 0 = no limit), hooks (below), and
-- the relay's connection options (write_cap).
--
-- Hooks, all optional. Those that decide return true, or false plus a reason that reaches the
-- client (a hook that raises denies); the others only observe.
--   auth(client)                 hello from a client: client = {peer, client_id, user}, user the
--                                name of the key the client holds ("default" for the relay's key)
--   register(svc, client)        a registration: svc = {name, port (0 = any), message, max_users,
--                                max_total, ttl, idle_timeout, bind, store, user (its client's)}
--   user_connect(svc, user)      a user reached the outer port: user = {peer}
--   user_close(svc, info)        a user left: info = {peer, bytes_up, bytes_down, duration_ms,
--                                reason}
--   up(svc), down(svc, reason)   the outer port opened / closed
--   unregister(svc, reason)      the registration ended
--   discover(list, client, what) filters what a client sees: a page of the service list, or
--                                with what = "ports" a page of free ports; returns what to show
--   tap(svc, user, direction, bytes)  opt-in data tap: the first tap_bytes (a number in the
--                                hook table, default 4096) of each direction of each user
--                                connection, direction "up" (user to service) or "down"
-- svc.store is a table shared by every hook call about one service (it survives a client's
-- reconnect). auth, register run in the client's control task and may await; user_connect and
-- user_close run on the data path and must not.
-- The hooks a relay knows (dial and dial_close are the relay's -L/-D policy, tap_bytes a number).
local hook_names = { auth = true, register = true, unregister = true, user_connect = true, user_close = true,
  up = true, down = true, discover = true, tap = true, tap_bytes = true, dial = true, dial_close = true }

-- A hook table with a misspelt name would silently never run: refuse it. Returns true or nil, err.
function M.check_hooks(hooks)
  for name, fn in pairs(hooks or {}) do
    if not hook_names[name] then
      local known = {}
      for k in pairs(hook_names) do known[#known + 1] = k end
      table.sort(known)
      return nil, string.format("unknown hook %q (hooks: %s)", tostring(name), table.concat(known, ", "))
    end
    local want = name == "tap_bytes" and "number" or "function"
    if type(fn) ~= want then return nil, string.format("hook %s must be a %s, not a %s", name, want, type(fn)) end
  end
  return true
end

-- Hook errors are logged with where they happened.
local function traceback(err)
  return debug.traceback(tostring(err), 2)
end

function M.new(opts)
  local hooks_ok, herr = M.check_hooks(opts.hooks)
  if not hooks_ok then return nil, herr end
  local self = setmetatable({
    pool = {},        -- port -> true
    sorted = {},      -- the pool's ports in order
    shared = {},      -- ranges {from, to, text} of users without ranges of their own
    user_ranges = {}, -- user name -> its ranges
    services = {},    -- port -> service
    by_name = {},     -- name -> service
    clients = {},     -- session -> client record
    meters = setmetatable({}, { __mode = "k" }), -- session -> {tokens, stamp, channels}
    retired = {},     -- listeners of ended services whose users have not all left
    ended_totals = { users_active = 0, users_total = 0, users_refused = 0, bytes_up = 0, bytes_down = 0 },
    bind = opts.bind,
    allow_client_bind = opts.allow_client_bind,
    lease = opts.lease or M.LEASE_DEFAULT,
    max_services = opts.max_services or M.MAX_SERVICES_DEFAULT,
    max_users = opts.max_users or M.MAX_USERS_DEFAULT,
    user_idle = opts.user_idle or M.USER_IDLE_DEFAULT,
    max_users_per_address = opts.max_users_per_address or M.MAX_USERS_PER_ADDRESS_DEFAULT,
    hooks = guard.hooks(opts.hooks) or {},
    opts = opts,
  }, Registry)
  for _, range in ipairs(opts.ports or {}) do
    local ok, err = self:add_ports(range)
    if not ok then return nil, err end
  end
  local ok, err = self:set_users(opts.users or {})
  if not ok then return nil, err end
  return self
end

local function range_of(from, to)
  if to == nil then
    local f, t = M.parse_range(from)
    if not f then return nil, t end
    return { from = f, to = t, text = tostring(from) }
  end
  local text = string.format("%s-%s", tostring(from), tostring(to))
  local f, t = M.parse_range(text)
  if not f then return nil, t end
  return { from = f, to = t, text = text }
end

-- registry:add_ports(from, to) or registry:add_ports("9930-9939"): ports every user without
-- ranges of its own may use; live, takes effect at once.
function Registry:add_ports(from, to)
  local r, err = range_of(from, to)
  if not r then return nil, err end
  for _, had in ipairs(self.shared) do
    if had.from == r.from and had.to == r.to then return true end -- a reload names it again
  end
  self.shared[#self.shared + 1] = r
  self:_pool_add(r.from, r.to)
  return true
end

-- registry:set_users({{name =, ports = {"9930-9934", ...}}, ...}): the users with ranges of their
-- own may register there only (their ranges join the pool); the others use the shared ranges.
-- For the next registration: services already up stay up. true, or nil, err (nothing changed).
function Registry:set_users(users)
  local ranges = {}
  for _, u in ipairs(users) do
    if u.ports then
      local list = {}
      for _, text in ipairs(u.ports) do
        local r, err = range_of(text)
        if not r then return nil, "users." .. u.name .. ": " .. err end
        list[#list + 1] = r
      end
      ranges[u.name] = list
    end
  end
  for _, list in pairs(ranges) do
    for _, r in ipairs(list) do self:_pool_add(r.from, r.to) end
  end
  self.user_ranges = ranges
  return true
end

-- The ranges a user may register in.
function Registry:_ranges_of(user)
  return self.user_ranges[user] or self.shared
end

local function in_ranges(ranges, port)
  for _, r in ipairs(ranges) do
    if port >= r.from and port <= r.to then return true end
  end
  return false
end

local function range_texts(ranges)
  local texts = {}
  for i, r in ipairs(ranges) do texts[i] = r.text end
  return #texts > 0 and table.concat(texts, ", ") or "none"
end

function Registry:_pool_add(from, to)
  for p = from, to do
    if not self.pool[p] then
      self.pool[p] = true
      self.sorted[#self.sorted + 1] = p
    end
  end
  table.sort(self.sorted) -- once per change of the pool, not per registration
  return true
end

-- Free ports in order; at most `limit` of them (registering "any" needs only the first few); only
-- those in `ranges` when given.
function Registry:free_ports(limit, ranges)
  local free, services = {}, self.services
  for _, p in ipairs(self.sorted) do
    if not services[p] and (not ranges or in_ranges(ranges, p)) then
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
  local ok, allowed, reason = xpcall(hook, traceback, ...)
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
  local ok, err = xpcall(hook, traceback, ...)
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

-- The index in the sorted pool of the first port above `after`.
local function first_above(sorted, after)
  local lo, hi = 1, #sorted + 1
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if sorted[mid] <= after then lo = mid + 1 else hi = mid end
  end
  return lo
end

-- One page of discovery, in port order from the first pool port above `after`: what
-- view(port) gives (nil skips the port), at most `limit` of them, filtered by the discover
-- hook; and the port to continue after, nil at the end. Every service is on a pool port (the
-- pool only grows), so walking the pool finds them all.
function Registry:_page(what, after, limit, view, client)
  local items, sorted, next_after = {}, self.sorted, nil
  for i = first_above(sorted, after), #sorted do
    local item = view(sorted[i])
    if item then
      items[#items + 1] = item
      if #items == limit then
        next_after = sorted[i]
        break
      end
    end
  end
  if self.hooks.discover then
    local ok, filtered = xpcall(self.hooks.discover, traceback, items, client and client.info, what)
    if not ok then log.error("discover hook failed: %s", tostring(filtered)) end
    items = ok and type(filtered) == "table" and filtered or {}
  end
  return items, next_after
end

function Registry:_services_page(after, limit, client)
  return self:_page("services", after, limit, function(port)
    local svc = self.services[port]
    return svc and public_view(svc)
  end, client)
end

function Registry:_ports_page(after, limit, client)
  return self:_page("ports", after, limit, function(port)
    if not self.services[port] then return port end
  end, client)
end

-- Every service, as discovery shows it to `client` (nil for the relay's own listing: the
-- discover hook then sees no client).
function Registry:services_list(client)
  local list, after = {}, 0
  repeat
    local page
    page, after = self:_services_page(after, M.SERVICES_PAGE, client)
    for _, item in ipairs(page) do list[#list + 1] = item end
  until not after
  return list
end

-- Adds an outer port's counters (listener:stats()) to a table of registry stats.
local function add_counts(to, ls)
  to.users_active = to.users_active + ls.active
  to.users_total = to.users_total + ls.accepted
  to.users_refused = to.users_refused + ls.refused + ls.refused_busy + ls.refused_total + ls.refused_address
    + ls.denied
  to.bytes_up = to.bytes_up + ls.bytes_up
  to.bytes_down = to.bytes_down + ls.bytes_down
end

-- Reverse-tunnel traffic over live and ended services: users now, users in all (accepted),
-- users refused (busy, limits, hooks, no session) and the bytes of users that have left, up
-- (users to services) and down.
function Registry:stats()
  local st = {}
  for k, v in pairs(self.ended_totals) do st[k] = v end
  for _, svc in pairs(self.services) do add_counts(st, svc.listener:stats()) end
  for listener in pairs(self.retired) do add_counts(st, listener:stats()) end
  return st
end

-- The outer port of an ended service: its counts join the totals once its last user has left
-- (they are final then); until then it is kept and counted live.
function Registry:_retire(listener)
  local ls = listener:stats()
  if ls.active > 0 then
    self.retired[listener] = true
    return
  end
  self.retired[listener] = nil
  add_counts(self.ended_totals, ls)
end

-- Stops the service's timers and takes it off its client's books; returns that client.
local function detach(svc)
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

-- Ends a service: closes its outer port (live users finish on their own) and tells the client
-- why (`code` for programs, `reason` for people), unless `quiet`: the relay itself is stopping
-- (its clients will re-register with the next one) or the client asked for it.
function Registry:_end(svc, reason, code, quiet)
  if svc.state == "ended" then return end
  svc.state = "ended"
  svc.listener:close()
  self:_retire(svc.listener)
  if self.services[svc.port] == svc then self.services[svc.port] = nil end
  if self.by_name[svc.name] == svc then self.by_name[svc.name] = nil end
  local client = detach(svc)
  if client and not quiet and client.channel:is_open() then
    client.channel:send({ op = "ended", id = svc.id, reason = reason, code = code })
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
  -- Names and messages end up on other people's terminals: only printable UTF-8 is taken.
  if type(req.name) ~= "string" or req.name == "" or #req.name > NAME_MAX or not pretty.is_printable(req.name) then
    return false, "name must be 1-" .. NAME_MAX .. " bytes of printable UTF-8"
  end
  if req.message ~= nil and (type(req.message) ~= "string" or #req.message > MESSAGE_MAX) then
    return false, "message must be a string of at most " .. MESSAGE_MAX .. " bytes"
  end
  if req.message and not pretty.is_printable(req.message) then
    return false, "message must be printable UTF-8 on one line (no control characters)"
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
-- same name (a reconnect, or a restarted process with the same client id and user).
function Registry:_own(client, name)
  local svc = self.by_name[name]
  if svc and svc.client_id == client.id and svc.user == client.info.user then return svc end
end

-- A live service of the same client id whose session belongs to another process (another
-- instance token): taking it over would cut off a running client without it knowing. Once
-- that session is gone (the lease), or from the same process reconnecting, takeover is fine.
local function held_by_another_live_client(svc, client)
  return svc.state == "up" and svc.client ~= client and svc.client.instance ~= client.instance
end

local function unbracket(host)
  return (host:gsub("^%[(.*)%]$", "%1"))
end

-- Where a service's outer port listens: the operator's address when one is set (a client's
-- BIND must then be the same, unless the operator lets clients choose), else the client's
-- BIND, else all interfaces. nil, reason when the client's BIND is refused.
function Registry:_outer_bind(wanted)
  if wanted == "" then wanted = nil end
  if not self.bind or self.allow_client_bind then return wanted or self.bind or "" end
  if wanted and unbracket(wanted) ~= unbracket(self.bind) then
    return nil, string.format("this relay's outer ports listen on %s only; leave BIND out", self.bind)
  end
  return self.bind
end

-- A client's limit, or the relay's default when it sets none (0 or absent).
local function limit_or_default(value, default)
  if value and value > 0 then return value end
  if default > 0 then return default end
end

-- Opens the outer port for a service; the relay listens before it answers ok.
function Registry:_listen(svc, port, bind, session)
  return core.forward({
    host = bind, port = port, target = "@svc/" .. svc.id, send_peer = true, session = session, name = svc.name,
    max_users = svc.max_users, max_total = svc.max_total, max_users_per_address = self.max_users_per_address,
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
      if self.retired[svc.listener] then self:_retire(svc.listener) end
      if svc.max_total and svc.max_total > 0 and svc.state ~= "ended" then
        local st = svc.listener:stats()
        if st.accepted >= svc.max_total and st.active == 0 then
          self:_end(svc, "served its " .. svc.max_total .. " users", "max_total")
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
  if own and held_by_another_live_client(own, client) then
    local code = port == own.port and "port_taken" or "name_taken"
    return nil, code, string.format("%s is held by another live client with the same client id (%s)",
      code == "port_taken" and "port " .. port or "name " .. req.name, client.id)
  end
  local bind, berr = self:_outer_bind(req.bind)
  if not bind then return nil, "bind_refused", berr end
  local user = client.info.user
  local ranges = self:_ranges_of(user)
  if port ~= 0 then
    if not self.pool[port] then return nil, "not_in_pool", "port " .. port .. " is not in the pool" end
    if not in_ranges(ranges, port) then
      return nil, "denied", string.format("port %d is not among the ports of user %s (%s)", port, tostring(user),
        range_texts(ranges))
    end
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
    client = client, client_id = client.id, user = user, max_users = limit_or_default(req.max_users, self.max_users),
    max_total = req.max_total, ttl = req.ttl, idle_timeout = limit_or_default(req.idle_timeout, self.user_idle),
    bind = bind, store = own and own.store or {}, state = "up", port = port,
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
      for _, p in ipairs(self:free_ports(16, ranges)) do
        listener = self:_listen(svc, p, svc.bind, client.session)
        if listener then
          port = p
          break
        end
      end
      if not listener then
        return nil, "port_taken", string.format("no free port among the ports of user %s (%s)", tostring(user),
          range_texts(ranges))
      end
    end
    if own then self:_end(own, "replaced by a new registration", "replaced") end
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

-- Our own registration again (a reconnect, or a restart with the same client id): the record,
-- its outer port and its live users stay; it now belongs to the new session. The port never
-- closes, so nobody else can take it in between.
function Registry:_take_over(old, new, client)
  detach(old)
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
    svc.timer = one_shot(svc.ttl, function() self:_end(svc, "lifetime over", "ttl") end)
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
      svc.lease_timer = one_shot(self.lease, function()
        svc.lease_timer = nil
        self:_end(svc, "lease expired", "lease")
      end)
    end
  end
end

local handlers = {}

function handlers.hello(self, client, req)
  if type(req.client_id) ~= "string" or req.client_id == "" or #req.client_id > 128 then
    return nil, "bad_request", "client_id must be a string of 1-128 bytes"
  end
  if req.instance ~= nil and (type(req.instance) ~= "string" or req.instance == "" or #req.instance > 64) then
    return nil, "bad_request", "instance must be a string of 1-64 bytes"
  end
  client.id = req.client_id
  client.instance = req.instance
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
      self:_end(svc, "cancelled by the client", "cancelled")
      return {}
    end
  end
  return nil, "not_found", "no such service"
end

-- The client is stopping: its services end now instead of keeping their ports for the lease.
function handlers.goodbye(self, client)
  for svc in pairs(client.services) do self:_end(svc, "released by the client", "released", true) end
  return {}
end

-- Paging fields of a discovery request: after (a port, default 0) and limit (1-page_max).
local function page_fields(req, page_max)
  local after, limit = req.after or 0, req.limit or page_max
  if type(after) ~= "number" or after ~= math.floor(after) or after < 0 or after > 65535 then
    return nil, "after must be a port number"
  end
  if type(limit) ~= "number" or limit ~= math.floor(limit) or limit < 1 or limit > page_max then
    return nil, "limit must be an integer in 1-" .. page_max
  end
  return after, limit
end

function handlers.services(self, client, req)
  local after, limit = page_fields(req, M.SERVICES_PAGE)
  if not after then return nil, "bad_request", limit end
  local page, next_after = self:_services_page(after, limit, client)
  return { services = page, next = next_after }
end

function handlers.ports(self, client, req)
  local after, limit = page_fields(req, M.PORTS_PAGE)
  if not after then return nil, "bad_request", limit end
  local page, next_after = self:_ports_page(after, limit, client)
  return { ports = page, next = next_after }
end

-- Takes `cost` tokens from a session's bucket: true, or false and the milliseconds until the
-- bucket holds enough.
local function spend(meter, cost)
  local now = uv.now()
  meter.tokens = math.min(M.CONTROL_BURST, meter.tokens + (now - meter.stamp) * M.CONTROL_RATE / 1000)
  meter.stamp = now
  if meter.tokens >= cost then
    meter.tokens = meter.tokens - cost
    return true
  end
  return false, math.ceil((cost - meter.tokens) * 1000 / M.CONTROL_RATE)
end

-- The answer to one request.
function Registry:_answer(client, meter, req, err)
  local op = type(req) == "table" and type(req.op) == "string" and req.op or nil
  local allowed, wait_ms = spend(meter, COST[op] or 1)
  if not allowed then
    return { ok = false, error = "rate_limited", retry_after = wait_ms,
      reason = string.format("too many control requests; retry in %d ms", wait_ms) }
  elseif not op then
    return { ok = false, error = "bad_request", reason = err or "bad message: not a request" }
  end
  local handler = handlers[op]
  if not handler then
    return { ok = false, error = "bad_request", reason = "unknown op " .. op:sub(1, 32) }
  elseif op ~= "hello" and not client.authed then
    return { ok = false, error = "bad_request", reason = "hello first" }
  end
  local result, code, reason = handler(self, client, req)
  if not result then return { ok = false, error = code, reason = reason } end
  result.ok = true
  return result
end

-- Answers requests until the channel closes.
function Registry:_serve_requests(client, meter)
  local channel = client.channel
  while true do
    local req, err = channel:recv()
    if req == nil and not channel:is_open() then return err end
    local reply = self:_answer(client, meter, req, err)
    if type(req) == "table" and type(req.seq) == "number" then reply.seq = req.seq end
    if not reply.ok then log.debug("control request from %s refused: %s", client.info.peer, tostring(reply.reason)) end
    local sent, serr = pcall(channel.send, channel, reply)
    if not sent then -- a hook's answer that cannot be sent (too big, not encodable)
      log.error("control answer to %s cannot be sent: %s", client.info.peer, tostring(serr))
      channel:send({ seq = reply.seq, ok = false, error = "failed", reason = "the relay could not send its answer" })
    end
  end
end

-- A channel over the session's bound: its first request is refused, and what follows is
-- dropped until the client closes it (closing it here could cut the refusal off).
local function refuse_channel(channel)
  local req = channel:recv()
  if req ~= nil then
    channel:send({ seq = type(req) == "table" and type(req.seq) == "number" and req.seq or nil, ok = false,
      error = "rate_limited", reason = "at most " .. M.CHANNELS_PER_SESSION .. " control channels per session" })
  end
  repeat
    req = channel:recv()
  until req == nil and not channel:is_open()
end

-- Serves one client's control channel until it closes (runs as a task). Whatever ends it, an
-- error included, the client's services go through the lease as for a lost session.
function Registry:serve(channel, session)
  local meter = self.meters[session]
  if not meter then
    meter = { tokens = M.CONTROL_BURST, stamp = uv.now(), channels = 0 }
    self.meters[session] = meter
  end
  if meter.channels >= M.CHANNELS_PER_SESSION then return refuse_channel(channel) end
  meter.channels = meter.channels + 1
  local client = {
    session = session, channel = channel, services = {}, count = 0,
    info = { peer = session:peer(), user = session:user() },
  }
  self.clients[session] = client
  local ok, reason = pcall(self._serve_requests, self, client, meter)
  if not ok then
    log.error("control channel of %s failed: %s", client.info.peer, tostring(reason))
    channel:close()
    reason = "control channel failed"
  end
  meter.channels = meter.channels - 1
  self:_client_lost(client, reason)
end

function Registry:close()
  for _, svc in pairs(self.services) do self:_end(svc, "relay shutting down", "shutdown", true) end
end

return M
