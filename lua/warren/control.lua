-- The control socket: a Unix socket (mode 0600) on which `warren status` and `warren reload`
-- reach a running process. Only a peer with the process's own uid (or root) is served: the
-- kernel says who it is (SO_PEERCRED), whatever the file's mode has become.
--
-- One request per connection: a line ("status", "status json" or "reload"); the answer is
-- "ok" or "error" on a line of its own, then the text, then the end of the connection.
local warren = require("warren")
local core = require("warren.core")
local log = require("warren.log")
local uv = require("luv")

local M = {}

local REQUEST_MAX = 4096

-- ---- JSON (status --json): plain data only ----

local escapes = { ['"'] = '\\"', ['\\'] = '\\\\', ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t' }
local function json(v)
  local t = type(v)
  if t == "table" then
    if #v > 0 or next(v) == nil then
      local parts = {}
      for i = 1, #v do parts[i] = json(v[i]) end
      return "[" .. table.concat(parts, ",") .. "]"
    end
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = tostring(k) end
    table.sort(keys)
    local parts = {}
    for i, k in ipairs(keys) do parts[i] = json(k) .. ":" .. json(v[k]) end
    return "{" .. table.concat(parts, ",") .. "}"
  elseif t == "number" then
    if v ~= v or v == math.huge or v == -math.huge then return "null" end
    return v == math.floor(v) and string.format("%d", v) or string.format("%.17g", v)
  elseif t == "boolean" then
    return tostring(v)
  elseif v == nil then
    return "null"
  end
  return '"' .. tostring(v):gsub('[%c"\\]', function(c)
    return escapes[c] or string.format("\\u%04x", c:byte())
  end) .. '"'
end
M.json = json

-- ---- what a process shows ----

-- status of a process started from the command line (no script): its relay and/or client.
local function cli_status(relay, client)
  local st = { tunnels = {} }
  if relay then
    st.relay = relay:stats()
    st.services = relay:services()
  end
  if client then
    st.connected = client.session ~= nil
    for _, f in ipairs(client.forwards) do
      local s = f:stats()
      st.tunnels[#st.tunnels + 1] = { name = tostring(f:port()), kind = s.bad_requests and "D" or "L",
        port = f:port(), active = s.active, connections = s.accepted, bytes_up = s.bytes_up,
        bytes_down = s.bytes_down }
    end
    for _, e in ipairs(client.entries) do
      st.tunnels[#st.tunnels + 1] = { name = e.name, kind = "R", port = e.port, state = e.state }
    end
  end
  return st
end

-- A source for the control socket: a declared generation, or what the command line built.
function M.source(opts)
  if opts.generation then
    return {
      status = function() return opts.generation:status() end,
      reload = function(who) return opts.generation:reload(who) end,
    }
  end
  return {
    status = function() return cli_status(opts.relay, opts.client) end,
    reload = function()
      return nil, "nothing to reload: this process was started from the command line, not by a script"
    end,
  }
end

local function number(v) return type(v) == "number" and string.format("%d", v) or "-" end

-- The status as text, for people.
function M.format_status(st)
  local out = {}
  if st.generation then
    out[#out + 1] = string.format("script %s, generation %d (%d reloads)", tostring(st.script), st.generation,
      st.reloads or 0)
  end
  if st.connected ~= nil then out[#out + 1] = "relay session: " .. (st.connected and "up" or "down") end
  if st.relay then
    local r = st.relay
    out[#out + 1] = string.format("relay: sessions %s (%s in all), streams %s (%s in all), bytes up %s down %s, "
      .. "services %s", number(r.sessions_active), number(r.sessions_total), number(r.streams_active),
      number(r.streams_total), number(r.bytes_up), number(r.bytes_down), number(#(st.services or {})))
  end
  local rows = { { "TUNNEL", "KIND", "PORT", "ACTIVE", "CONNECTIONS", "BYTES_UP", "BYTES_DOWN", "STATE" } }
  for _, t in ipairs(st.tunnels or {}) do
    rows[#rows + 1] = { t.name, t.kind, number(t.port), number(t.active), number(t.connections),
      number(t.bytes_up), number(t.bytes_down), t.state or "-" }
  end
  if #rows > 1 then
    for _, line in ipairs(require("warren.pretty").columns(rows)) do out[#out + 1] = line end
  end
  for _, s in ipairs(st.services or {}) do
    out[#out + 1] = string.format("service %s on port %s: %s users online", tostring(s.name), number(s.port),
      number(s.users_online))
  end
  return table.concat(out, "\n") .. "\n"
end

-- ---- the server ----

local function answer(pipe, ok, text)
  pipe:write((ok and "ok\n" or "error\n") .. (text or ""), function() pipe:close() end)
end

local function serve_request(source, pipe, uid, line)
  local command, arg = line:match("^(%S+)%s*(%S*)")
  if command == "status" then
    local st = source.status()
    answer(pipe, true, arg == "json" and json(st) .. "\n" or M.format_status(st))
  elseif command == "reload" then
    warren.spawn(function()
      local who = "control socket uid " .. uid
      log.info("reload asked on the control socket by uid %d", uid)
      local summary, err = source.reload(who)
      if summary then
        answer(pipe, true, string.format("generation %d: %d added, %d changed, %d removed, %d unchanged (%.1f ms)\n",
          summary.generation, summary.added, summary.changed, summary.removed, summary.unchanged, summary.ms))
      else
        answer(pipe, false, tostring(err) .. "\n")
      end
    end)
  else
    answer(pipe, false, string.format("unknown request %q (status, status json, reload)\n", tostring(command)))
  end
end

local function accept(server, source)
  local pipe = uv.new_pipe(false)
  if not server:accept(pipe) then
    pipe:close()
    return
  end
  local uid, err = core.peer_uid(pipe:fileno())
  local own = uv.getuid()
  if not uid or (uid ~= own and uid ~= 0) then
    log.warn("control socket: refused a peer with uid %s%s", tostring(uid), err and (" (" .. err .. ")") or "")
    answer(pipe, false, "permission denied: not the owner of this process\n")
    return
  end
  local buffered = ""
  pipe:read_start(function(rerr, data)
    if rerr or not data then
      if not pipe:is_closing() then pipe:close() end
      return
    end
    buffered = buffered .. data
    local line = buffered:match("^([^\n]*)\n")
    if line then
      pipe:read_stop()
      serve_request(source, pipe, uid, line)
    elseif #buffered > REQUEST_MAX then
      pipe:read_stop()
      answer(pipe, false, "request too long\n")
    end
  end)
end

-- Listens on PATH (a stale socket file there is replaced; any other file is refused).
-- Returns the server handle or nil, err.
function M.serve(path, source)
  local st = uv.fs_stat(path)
  if st then
    if st.type ~= "socket" then return nil, string.format("--control %s: exists and is not a socket", path) end
    local probe = uv.new_pipe(false)
    local live = warren.await(function(resolve)
      probe:connect(path, function(cerr) resolve(not cerr) end)
    end, 1000)
    probe:close()
    if live then return nil, string.format("--control %s: another process is listening there", path) end
    uv.fs_unlink(path)
  end
  local server = uv.new_pipe(false)
  local ok, err = server:bind(path)
  if not ok then
    server:close()
    return nil, string.format("--control %s: %s", path, tostring(err))
  end
  uv.fs_chmod(path, tonumber("600", 8))
  server:listen(16, function(lerr)
    if not lerr then accept(server, source) end
  end)
  server:unref() -- the socket alone does not keep the process alive
  warren.on_shutdown(function()
    if not server:is_closing() then server:close() end
    uv.fs_unlink(path)
  end)
  log.info("control socket on %s", path)
  return server
end

-- ---- the client (warren status, warren reload) ----

-- Sends one request; returns ok (the server's verdict), text; or nil, err when it cannot ask.
function M.ask(path, request, timeout_ms)
  local pipe = uv.new_pipe(false)
  local parts = {}
  local result, err = warren.await(function(resolve)
    pipe:connect(path, function(cerr)
      if cerr then return resolve(nil, cerr) end
      pipe:write(request .. "\n")
      pipe:read_start(function(rerr, data)
        if rerr then return resolve(nil, rerr) end
        if data then parts[#parts + 1] = data else resolve(true) end
      end)
    end)
  end, timeout_ms or 30000)
  pipe:close()
  if not result then return nil, string.format("cannot ask %s: %s", path, tostring(err)) end
  local reply = table.concat(parts)
  local verdict, text = reply:match("^(%a+)\n(.*)$")
  if not verdict then return nil, string.format("%s gave no answer", path) end
  return verdict == "ok", text
end

return M
