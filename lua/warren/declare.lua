-- Declared tunnel scripts: a script run by `warren run FILE` may return a table that says what
-- should run (a relay, a client and its named tunnels); this module builds it with the same
-- objects the command line builds (warren.tunnel's relay and client, client:forward,
-- client:dynamic, client:register), and reloads it as a transaction:
--
--   1. the file is run again in a fresh environment and its table checked;
--   2. new listeners are bound and new registrations made (nothing running is touched yet);
--   3. only when all of that worked: changed tunnels are updated, removed ones closed, the
--      hooks swapped in one assignment. Any failure before 3 undoes 2 and leaves the running
--      generation as it was; the error goes back to whoever asked.
--
-- Tunnels are matched by name: an unchanged one keeps its listener, its registration and its
-- live connections. A changed -L keeps its listener and sends new connections to the new
-- target; a removed tunnel stops accepting at once, and its live connections may finish for
-- `grace` seconds (default 30), after which those still open are closed. A tunnel that stays, or
-- is replaced under its name, is never cut.
local warren = require("warren")
local addr = require("warren.addr")
local guard = require("warren.guard")
local keys = require("warren.keys")
local log = require("warren.log")
local registry = require("warren.registry")
local tunnel = require("warren.tunnel")
local uv = require("luv")

local M = {}

-- Keys of the declaration, and which are applied by a reload (the others need a restart).
local relay_keys = { serve = true, ports = true, hooks = true, outer_bind = true, allow_client_bind = true,
  lease = true, max_services = true, max_users = true, user_idle = true, max_users_per_address = true,
  max_failed_handshakes = true, cert = true, cert_key = true, self_signed = true, fallback = true,
  trusted_fronts = true, users = true }
-- grace = SECONDS: how long a removed tunnel's connections may go on before they are cut.
local GRACE_DEFAULT = 30
local client_keys = { server = true, client_id = true, ca = true, pin = true, tunnels = true, websocket = true,
  http = true, host_header = true, headers = true, proxy = true, grace = true }
local common_keys = { key = true, key_file = true, password = true, tls = true, sni = true, write_cap = true,
  idle_timeout = true, keepalive = true, session_buffer = true, cipher = true, kcp = true, kcp_mode = true,
  kcp_mtu = true, kcp_sndwnd = true, kcp_rcvwnd = true, congestion = true }
-- The process's own: access_log = {path = FILE | "-", format = "text" | "json"} and metrics =
-- "[HOST:]PORT" (see the command line's --access-log and --metrics).
local process_keys = { access_log = true, metrics = true }
-- watch = {FILE, ...}: files the script reads (a list of services, an ACL); when they or the
-- script change, it reloads (as with --watch). Not an option of the relay or the client.
local reloadable = { hooks = true, ports = true, tunnels = true, watch = true, grace = true, users = true }
local tunnel_key_order = { "L", "D", "R", "message", "max_users", "max_total", "ttl", "user", "password" }
local tunnel_keys = {}
for _, k in ipairs(tunnel_key_order) do tunnel_keys[k] = true end

local function sorted_keys(t)
  local list = {}
  for k in pairs(t) do list[#list + 1] = tostring(k) end
  table.sort(list)
  return list
end

local function known_keys()
  local all = { watch = true }
  for _, set in ipairs({ relay_keys, client_keys, common_keys, process_keys }) do
    for k in pairs(set) do all[k] = true end
  end
  return all
end

-- What decides "unchanged": the whole tunnel table, in a fixed order of its keys.
local function fingerprint(t)
  local parts = {}
  for i, k in ipairs(tunnel_key_order) do parts[i] = tostring(t[k]) end
  return table.concat(parts, "\0")
end

-- One tunnel's table into {kind, name, fingerprint, ...}; nil, err. `known` is the spec of the
-- running tunnel of that name, if any: when nothing changed it is reused, which keeps a reload
-- of thousands of unchanged tunnels fast. Messages start with `where` (default "tunnels.NAME";
-- "" for none, as the command line's -L/-D/-R use it).
local function check_tunnel(name, t, known, where)
  if type(name) ~= "string" or name == "" then return nil, "tunnel names must be non-empty strings" end
  where = where or ("tunnels." .. name)
  local function bad(msg) return nil, where ~= "" and (where .. ": " .. msg) or msg end
  if type(t) ~= "table" then return bad("must be a table such as { L = \"9000:127.0.0.1:80\" }") end
  for k in pairs(t) do
    if not tunnel_keys[k] then
      return bad(string.format("unknown key %q (keys: %s)", tostring(k), table.concat(tunnel_key_order, ", ")))
    end
  end
  local print = fingerprint(t)
  if known and known.fingerprint == print then return known end
  local kind
  for _, k in ipairs({ "L", "D", "R" }) do
    if t[k] ~= nil then
      if kind then return bad("give one of L, D and R") end
      kind = k
    end
  end
  if not kind then return bad("needs L, D or R") end
  local text = t[kind]
  if type(text) ~= "string" then return bad(kind .. " must be a string") end
  for _, k in ipairs({ "max_users", "max_total", "ttl" }) do
    if t[k] ~= nil and (type(t[k]) ~= "number" or t[k] < 0) then return bad(k .. " must be a number >= 0") end
  end
  local f, err = addr.parse_forward(text, "-" .. kind)
  if not f then return bad(err) end
  local spec = { kind = kind, name = name, source = t }
  if kind == "L" then
    if not f.target then return bad("-L " .. text .. " needs a target: [BIND:]LPORT:HOST:RPORT (D is the proxy)") end
    spec.listen, spec.target = addr.format(f.listen), addr.format(f.target)
  elseif kind == "D" then
    if f.target then return bad("-D takes [BIND:]PORT, not " .. text) end
    if (t.user == nil) ~= (t.password == nil) then return bad("user and password go together") end
    spec.listen = addr.format(f.listen)
  else
    if not f.target then return bad("-R " .. text .. " needs an inner address: [BIND:]OUTER:HOST:PORT") end
    -- An absent or empty BIND is the relay's choice (all interfaces), not -L's 127.0.0.1.
    if f.target.host == "" then f.target.host = "127.0.0.1" end
    spec.outer, spec.bind, spec.inner = f.listen.port, f.bind ~= "" and f.bind or nil, addr.format(f.target)
  end
  spec.fingerprint = print
  return spec
end

-- For the command line: one -L/-D/-R (t = {L = SPEC} ...) checked as a script's tunnel is.
function M.tunnel(name, t)
  return check_tunnel(name, t, nil, "")
end

-- Checks a declaration; returns {tunnels = name -> spec, hooks = ...} or nil, err. `running`
-- is the generation in force, whose unchanged tunnels need no second look.
function M.check(decl, running)
  if type(decl) ~= "table" then return nil, "a tunnel script must return a table" end
  local known = known_keys()
  for k in pairs(decl) do
    if not known[k] then
      return nil, string.format("unknown key %q (keys: %s)", tostring(k), table.concat(sorted_keys(known), ", "))
    end
  end
  if not decl.serve and not decl.server then return nil, "declare serve (a relay), server (a client), or both" end
  if decl.tunnels ~= nil and not decl.server then return nil, "tunnels need a server (the relay to go through)" end
  if decl.hooks ~= nil then
    if not decl.serve then return nil, "hooks are the relay's: they need serve" end
    if type(decl.hooks) ~= "table" then return nil, "hooks must be a table of functions" end
    local ok, herr = registry.check_hooks(decl.hooks)
    if not ok then return nil, "hooks: " .. herr end
  end
  local grace = decl.grace
  if grace ~= nil and (type(grace) ~= "number" or not (grace >= 0 and grace < math.huge)) then
    return nil, "grace must be a number of seconds, 0 or more (0: cut a removed tunnel's connections at once)"
  end
  if decl.watch ~= nil and type(decl.watch) ~= "table" then
    return nil, "watch must be a list of files such as { \"services.txt\" }"
  end
  for _, file in ipairs(decl.watch or {}) do
    if type(file) ~= "string" then return nil, "watch must list file names" end
  end
  local al = decl.access_log
  if al ~= nil and (type(al) ~= "table" or type(al.path) ~= "string" or al.path == ""
      or (al.format ~= nil and al.format ~= "text" and al.format ~= "json")) then
    return nil, "access_log must be a table such as { path = \"access.log\", format = \"text\" | \"json\" }"
  end
  if decl.metrics ~= nil then
    local _, merr = require("warren.metrics").parse_address(decl.metrics)
    if merr then return nil, "metrics: " .. merr end
  end
  if decl.ports ~= nil and type(decl.ports) ~= "table" then
    return nil, "ports must be a list such as { \"9930-9939\" }"
  end
  for _, range in ipairs(decl.ports or {}) do
    local from, rerr = registry.parse_range(range)
    if not from then return nil, "ports: " .. rerr end
  end
  if decl.users ~= nil then
    -- Checked (key files read) before anything is applied, so a bad user fails the reload.
    if not decl.serve then return nil, "users are the relay's: they need serve" end
    local own = (decl.key or decl.key_file or decl.password) and string.rep("\0", 32) or nil -- its place
    local _, uerr = keys.resolve_users(decl.users, own)
    if uerr then return nil, uerr end
  end
  local plan = { decl = decl, tunnels = {}, hooks = guard.hooks(decl.hooks) or {} }
  if decl.tunnels ~= nil and type(decl.tunnels) ~= "table" then
    return nil, "tunnels must be a table of named tunnels"
  end
  local running_tunnels = running and running.tunnels or {}
  for name, t in pairs(decl.tunnels or {}) do
    local spec, err = check_tunnel(name, t, running_tunnels[name] and running_tunnels[name].spec)
    if not spec then return nil, err end
    plan.tunnels[name] = spec
  end
  return plan
end

-- Runs a script file in a fresh environment (globals it sets stay in it); returns what it
-- returned, or nil, err (a syntax or runtime error, with its traceback).
function M.load(path, args)
  local fn, err = loadfile(path)
  if not fn then return nil, err end
  guard.interpreted(fn) -- its hooks, and the helpers they call
  setfenv(fn, setmetatable({ arg = args }, { __index = _G }))
  local ok, result = xpcall(function() return fn(unpack(args or {})) end, debug.traceback)
  if not ok then return nil, tostring(result) end
  return result
end

-- ---- opening and closing tunnels ----

-- Opens a checked tunnel on a client: its forward, proxy or registered entry; nil, err.
local function open_tunnel(client, spec)
  local s = spec.source
  if spec.kind == "L" then
    return client:forward({ listen = spec.listen, target = spec.target, name = spec.name })
  elseif spec.kind == "D" then
    return client:dynamic({ listen = spec.listen, user = s.user, password = s.password, name = spec.name })
  end
  local entry, err = client:register({ outer = spec.outer, bind = spec.bind, inner = spec.inner, name = spec.name,
    message = s.message, max_users = s.max_users, max_total = s.max_total, ttl = s.ttl })
  if not entry then return nil, string.format("cannot register %s: %s", spec.name, tostring(err)) end
  return entry
end

M.open = open_tunnel

local function close_tunnel(client, spec, obj)
  if spec.kind == "R" then
    obj:cancel()
    return
  end
  obj:close()
  for i, f in ipairs(client.forwards) do -- the client re-attaches its listeners to each session
    if f == obj then
      table.remove(client.forwards, i)
      break
    end
  end
end

-- A removed tunnel: its listener is closed (-L, -D) or its outer port given up (-R) already; the
-- connections still open get `grace` seconds, then are cut (logged). The timer does not keep the
-- process alive.
local function drain(name, obj, grace, on_cut)
  local active = obj:stats().active
  if active == 0 then return nil end
  local function cut()
    local n = obj:cut()
    if n > 0 then
      log.info("tunnel %s removed: %d connection%s cut after %s s grace", name, n, n == 1 and "" or "s",
        tostring(grace))
    end
    if on_cut then on_cut() end
  end
  if grace == 0 then
    cut()
    return nil
  end
  log.info("tunnel %s removed: %d connection%s may go on for %s s", name, active, active == 1 and "" or "s",
    tostring(grace))
  local timer = uv.new_timer()
  timer:start(math.floor(grace * 1000 + 0.5), 0, function()
    timer:close()
    cut()
  end)
  timer:unref()
  return timer
end

-- ---- generations ----

local Generation = {}
Generation.__index = Generation

-- The keys and options both ends share; with no key, key_file or password, WARREN_KEY is the key
-- (as on the command line).
local function common_options(decl)
  local t = {}
  for k in pairs(common_keys) do t[k] = decl[k] end
  local env = os.getenv("WARREN_KEY")
  if not (t.key or t.key_file or t.password) and env and env ~= "" then t.key = env end
  return t
end

local function relay_options(decl, hooks_of)
  local t = common_options(decl)
  -- With users, WARREN_KEY is not a user of its own: only the keys the script names are.
  if decl.users and not (decl.key or decl.key_file or decl.password) then t.key = nil end
  for k in pairs(relay_keys) do t[k] = decl[k] end
  t.listen, t.serve = decl.serve, nil
  t.max_users, t.outer_bind = decl.max_users, decl.outer_bind
  t.hooks = hooks_of()
  -- The hooks of the generation in force: a reload swaps them without touching the relay.
  t.on_open = function(host, port, info)
    local dial = hooks_of().dial
    if not dial then return true end
    return dial(host, port, info)
  end
  t.on_close = function(info)
    local dial_close = hooks_of().dial_close
    if dial_close then dial_close(info) end
  end
  return t
end

local function client_options(decl)
  local t = common_options(decl)
  for k in pairs(client_keys) do t[k] = decl[k] end
  t.tunnels, t.grace = nil, nil
  return t
end

-- Applies a checked plan for the first time. Returns the generation or nil, err.
function M.start(plan, source)
  local self = setmetatable({ source = source, tunnels = {}, number = 1, hooks = plan.hooks,
    decl = plan.decl, reloads = 0, draining = {} }, Generation)
  local decl = plan.decl
  if decl.access_log then
    local ok, err = require("warren.core").access_log({ path = decl.access_log.path, format = decl.access_log.format })
    if not ok then return nil, string.format("access_log %s: %s", decl.access_log.path, err) end
  end
  if decl.serve then
    local relay, err = tunnel.relay(relay_options(decl, function() return self.hooks end))
    if not relay then return nil, err end
    self.relay = relay
  end
  if decl.server then
    local client, err = tunnel.client(client_options(decl))
    if not client then return self:_abort(err) end
    local ok, cerr = client:connect()
    if not ok then return self:_abort(string.format("cannot connect to relay %s: %s", decl.server, cerr)) end
    self.client = client
    for _, name in ipairs(sorted_keys(plan.tunnels)) do
      local spec = plan.tunnels[name]
      local obj, oerr = open_tunnel(client, spec)
      if not obj then return self:_abort(oerr) end
      self.tunnels[name] = { spec = spec, obj = obj }
      if spec.kind == "R" then
        io.stdout:write(string.format("%s: relay port %d -> %s\n", name, obj.port, spec.inner))
        io.stdout:flush()
      end
    end
  end
  if decl.metrics then
    local server, merr = require("warren.metrics").serve(decl.metrics, function() return self end)
    if not server then return self:_abort(merr) end
    self.metrics = server
  end
  warren.on_shutdown(function() self:close() end)
  return self
end

function Generation:_abort(err)
  self:close()
  return nil, err
end

local function stop_watching(pollers)
  for _, poll in pairs(pollers or {}) do
    if not poll:is_closing() then poll:close() end
  end
end

function Generation:close()
  self.closed = true
  stop_watching(self.pollers)
  self.pollers = nil
  for obj, timer in pairs(self.draining or {}) do
    if not timer:is_closing() then timer:close() end
    self.draining[obj] = nil
  end
  if self.client then
    self.client:release()
    self.client:close()
  end
  if self.relay then self.relay:close() end
  if self.metrics then self.metrics.close() end
end

local function user_names(list)
  local names = {}
  for i, u in ipairs(list or {}) do names[i] = u.name end
  return names
end

-- Keys that a reload cannot apply: nil, or an error naming the first one that changed.
local function same(a, b)
  if type(a) ~= "table" or type(b) ~= "table" then return a == b end
  for k, v in pairs(a) do if not same(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end

local function restart_needed(old, new)
  for _, k in ipairs(sorted_keys(known_keys())) do
    if not reloadable[k] and not same(old[k], new[k]) then
      return string.format("%s changed: a reload cannot apply it (restart warren)", k)
    end
  end
  if old.serve then
    local had = {}
    for _, r in ipairs(old.ports or {}) do had[r] = true end
    for _, r in ipairs(new.ports or {}) do had[r] = nil end
    local gone = next(had)
    if gone then return string.format("ports: removing %s needs a restart (the pool only grows)", gone) end
  end
end

-- Applies a new plan as a transaction (see the top of the file). Returns a summary
-- {added, changed, removed, unchanged} or nil, err with the running generation untouched. A
-- tunnel replaced on its own address (a -D, a registration) can only be opened again after the
-- commit: if that fails, the summary's `error` says so.
function Generation:apply(plan)
  local rerr = restart_needed(self.decl, plan.decl)
  if rerr then return nil, rerr end
  local client = self.client
  local prepared, rebind, update, removed = {}, {}, {}, {}
  local summary = { added = 0, changed = 0, removed = 0, unchanged = 0 }
  -- 1. What changed, and everything that can be bound before the commit.
  for name, spec in pairs(plan.tunnels) do
    local old = self.tunnels[name]
    if not old then
      prepared[name] = spec
      summary.added = summary.added + 1
    elseif old.spec.fingerprint == spec.fingerprint then
      summary.unchanged = summary.unchanged + 1
    else
      summary.changed = summary.changed + 1
      if spec.kind == "L" and old.spec.kind == "L" and spec.listen == old.spec.listen then
        update[name] = spec -- same listener, new target: in place, for new connections
      elseif spec.kind ~= "R" and old.spec.kind ~= "R" and spec.listen ~= old.spec.listen then
        prepared[name] = spec -- a new address: bound now, the old one closed at the commit
        removed[name] = old
      else
        rebind[name] = spec -- the same address, or a registration: replaced at the commit
        removed[name] = old
      end
    end
  end
  for name, old in pairs(self.tunnels) do
    if not plan.tunnels[name] then
      removed[name] = old
      summary.removed = summary.removed + 1
    end
  end
  local opened = {}
  local function undo(err)
    for name, obj in pairs(opened) do close_tunnel(client, prepared[name], obj) end
    return nil, err
  end
  for _, name in ipairs(sorted_keys(prepared)) do
    local obj, err = open_tunnel(client, prepared[name])
    if not obj then return undo(err) end
    opened[name] = obj
  end
  -- 2. The commit: nothing below can fail back into the old generation.
  local grace = plan.decl.grace or GRACE_DEFAULT
  for name, old in pairs(removed) do
    close_tunnel(client, old.spec, old.obj)
    self.tunnels[name] = nil
    if not plan.tunnels[name] then -- gone by name: drained, then cut
      local obj = old.obj
      self.draining[obj] = drain(name, obj, grace, function() self.draining[obj] = nil end)
    end
  end
  for name, obj in pairs(opened) do self.tunnels[name] = { spec = prepared[name], obj = obj } end
  for name, spec in pairs(update) do
    self.tunnels[name].obj:update({ target = spec.target })
    self.tunnels[name].spec = spec
  end
  local failures = {}
  for _, name in ipairs(sorted_keys(rebind)) do
    local obj, err = open_tunnel(client, rebind[name])
    if obj then
      self.tunnels[name] = { spec = rebind[name], obj = obj }
    else
      failures[#failures + 1] = string.format("tunnels.%s: %s", name, err)
    end
  end
  if self.relay then
    for _, range in ipairs(plan.decl.ports or {}) do self.relay:add_ports(range) end
    self.relay.registry.hooks = plan.hooks
    if self.decl.users or plan.decl.users then -- a key file may have changed under the same name
      local ended, uerr = self.relay:set_users(plan.decl.users or {})
      if ended then
        summary.sessions_ended = ended
        log.info("reload: users now %s; %d sessions of removed or re-keyed users ended",
          table.concat(user_names(self.relay.users), ", "), ended)
      else
        failures[#failures + 1] = "users: " .. tostring(uerr)
      end
    end
  end
  self.hooks = plan.hooks
  self.decl = plan.decl
  self.number = self.number + 1
  if #failures > 0 then
    summary.error = "applied, but these could not be opened again: " .. table.concat(failures, "; ")
  end
  return summary
end

-- Re-runs the script and applies it; the result is logged as well as returned.
function Generation:reload(who)
  if not self.source then
    return nil, "nothing to reload: this process was started from the command line, not by a script"
  end
  if self.closed then return nil, "shutting down" end
  if self.reloading then return nil, "a reload is already running" end
  self.reloading = true
  local t0 = uv.hrtime()
  local decl, err = M.load(self.source.path, self.source.args)
  local summary
  if decl ~= nil then
    local plan
    plan, err = M.check(decl, self)
    if plan then summary, err = self:apply(plan) end
  elseif not err then
    err = "the script returned nothing: only a script that returns a table can be reloaded"
  end
  self.reloading = false
  local ms = (uv.hrtime() - t0) / 1e6
  if not summary then
    log.error("reload%s failed, generation %d kept: %s", who and (" by " .. who) or "", self.number, err)
    return nil, err
  end
  self.reloads = self.reloads + 1
  if self.pollers then self:watch() end -- the list of watched files may have changed
  summary.generation, summary.ms = self.number, ms
  if summary.error then
    log.error("reload%s: generation %d %s", who and (" by " .. who) or "", self.number, summary.error)
    return nil, summary.error
  end
  log.info("reload%s: generation %d, %d added, %d changed, %d removed, %d unchanged (%.1f ms)",
    who and (" by " .. who) or "", self.number, summary.added, summary.changed, summary.removed,
    summary.unchanged, ms)
  return summary
end

-- What is running, for `warren status`: plain data.
function Generation:status()
  local st = { tunnels = {} }
  if self.source then st.generation, st.reloads, st.script = self.number, self.reloads, self.source.path end
  for _, name in ipairs(sorted_keys(self.tunnels)) do
    local t = self.tunnels[name]
    local row = { name = name, kind = t.spec.kind, spec = t.spec.source[t.spec.kind] }
    if t.spec.kind == "R" then
      row.state, row.port = t.obj.state, t.obj.port
    else
      local s = t.obj:stats()
      row.port, row.active = t.obj:port(), s.active
      row.connections, row.bytes_up, row.bytes_down = s.accepted, s.bytes_up, s.bytes_down
    end
    st.tunnels[#st.tunnels + 1] = row
  end
  if self.relay then
    st.relay = self.relay:stats()
    st.services = self.relay:services()
    st.sessions = self.relay:sessions()
  end
  if self.client then
    local session = self.client.session
    st.connected = session ~= nil
    st.session = session and session:stats() or nil -- streams, bytes and round trip of the session
  end
  return st
end

-- Reloads when the script, or a file its `watch` lists, changes (polled: an editor that
-- replaces the file is seen too). Called again after each reload, for a changed list.
function Generation:watch(interval_ms)
  self.watch_interval = interval_ms or self.watch_interval or 250
  local wanted, pollers = { [self.source.path] = true }, self.pollers or {}
  for _, file in ipairs(self.decl.watch or {}) do wanted[file] = true end
  for file, poll in pairs(pollers) do
    if not wanted[file] then
      poll:close()
      pollers[file] = nil
    end
  end
  for file in pairs(wanted) do
    if not pollers[file] then
      local poll = uv.new_fs_poll()
      poll:start(file, self.watch_interval, function(err)
        if err then return end
        warren.spawn(function() self:reload("--watch (" .. file .. ")") end)
      end)
      poll:unref()
      pollers[file] = poll
    end
  end
  self.pollers = pollers
end

-- What the command line built (serve, -L/-D/-R), seen as a generation that cannot reload: its
-- status is shown the same way. tunnels: name -> {spec = M.tunnel(...), obj = ...}.
function M.adopt(parts)
  return setmetatable({ relay = parts.relay, client = parts.client, tunnels = parts.tunnels or {}, number = 1,
    reloads = 0, hooks = {}, decl = {} }, Generation)
end

-- `warren run FILE` got a table back: build it, and make SIGHUP (and `warren reload`) reload it.
-- Returns the generation, or nil, err.
function M.run(decl, path, args)
  local plan, err = M.check(decl)
  if not plan then return nil, err end
  local gen, gerr = M.start(plan, { path = path, args = args })
  if not gen then return nil, gerr end
  warren.on_reload(function(who) return gen:reload(who or "SIGHUP") end)
  if plan.decl.watch and #plan.decl.watch > 0 then gen:watch() end
  M.current = gen
  return gen
end

return M
