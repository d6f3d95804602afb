-- The control socket: a Unix socket (mode 0600) on which `warren status` and `warren reload`
-- reach a running process. Only a peer with the process's own uid (or root) is served: the
-- kernel says who it is (SO_PEERCRED), whatever the file's mode has become.
--
-- One request per connection: a line ("status", "status json", "reload" or "repl"); the answer
-- is "ok" or "error" on a line of its own, then the text, then the end of the connection. After
-- "repl" the connection stays a prompt inside the process (`warren repl --attach`): each line
-- sent is fed to an evaluator (warren.repl), and each answer is the text to show followed by
-- "\1PROMPT\n". A line "\3" cancels the running chunk (its answer is "cancelled"), and is not
-- answered itself; a line "\2" drops an incomplete chunk and is answered with a prompt.
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

-- A source for the control socket: the generation of a script, or what the command line built
-- (declare.adopt). objects are what an attached prompt sees by name.
function M.source(gen)
  return {
    status = function() return gen:status() end,
    reload = function(who) return gen:reload(who) end,
    objects = { generation = gen, relay = gen.relay, client = gen.client, tunnels = gen.tunnels },
  }
end

local function number(v) return type(v) == "number" and string.format("%d", v) or "-" end

-- A KCP carrier's counters (the kcp_* fields of a session's or a relay's stats) on one line.
function M.format_kcp(k)
  return string.format("rtt %s ms (rto %s), window %s/%s (cwnd %s, remote %s), in flight %s, pace %s, "
    .. "segments out %s in %s, retransmits %s (fast %s), lost %s, duplicates %s",
    number(k.kcp_rtt_ms), number(k.kcp_rto_ms), number(k.kcp_snd_wnd), number(k.kcp_rcv_wnd), number(k.kcp_cwnd),
    number(k.kcp_remote_wnd), number(k.kcp_in_flight),
    (k.kcp_pacing_rate or 0) > 0 and string.format("%.1f MiB/s", k.kcp_pacing_rate / 1048576) or "-",
    number(k.kcp_segments_sent), number(k.kcp_segments_received), number(k.kcp_retransmits),
    number(k.kcp_fast_retransmits), number(k.kcp_lost_segments), number(k.kcp_duplicates))
end

-- The status as text, for people.
function M.format_status(st)
  local out = {}
  if st.generation then
    out[#out + 1] = string.format("script %s, generation %d (%d reloads)", tostring(st.script), st.generation,
      st.reloads or 0)
  end
  if st.session then
    local x = st.session
    out[#out + 1] = string.format("relay session: up, streams %s (%s in all), bytes in %s out %s, rtt %.1f ms",
      number(x.streams_active), number(x.streams_opened), number(x.bytes_in), number(x.bytes_out), x.rtt_ms or 0)
  elseif st.connected ~= nil then
    out[#out + 1] = "relay session: " .. (st.connected and "up" or "down")
  end
  if st.session and st.session.kcp_rtt_ms then
    out[#out + 1] = "  over KCP: " .. M.format_kcp(st.session)
  end
  if st.relay then
    local r = st.relay
    out[#out + 1] = string.format("relay: sessions %s (%s in all), streams %s (%s in all), bytes up %s down %s, "
      .. "services %s", number(r.sessions_active), number(r.sessions_total), number(r.streams_active),
      number(r.streams_total), number(r.bytes_up), number(r.bytes_down), number(#(st.services or {})))
    if r.kcp_sessions then
      out[#out + 1] = string.format("  KCP: conversations %s (%s in all), %s", number(r.kcp_conversations),
        number(r.kcp_sessions), M.format_kcp(r))
    end
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
  for _, s in ipairs(st.sessions or {}) do
    out[#out + 1] = string.format("session from %s: user %s, %s, streams %s, bytes in %s out %s", tostring(s.peer),
      s.user or "-", s.ready and "up" or "handshaking", number(s.streams), number(s.bytes_in), number(s.bytes_out))
  end
  return table.concat(out, "\n") .. "\n"
end

-- ---- the server ----

local function answer(pipe, ok, text)
  pipe:write((ok and "ok\n" or "error\n") .. (text or ""), function() pipe:close() end)
end

-- The prompt inside the process. `print` writes to the attached client; every line is logged
-- with the peer's uid, since any of them may change what runs.
local function serve_repl(source, pipe, uid, pending)
  local repl = require("warren.repl")
  local out = {}
  local function send(text, prompt)
    if pipe:is_closing() then return end
    out[#out + 1] = text
    out[#out + 1] = "\1" .. prompt .. "\n"
    pipe:write(table.concat(out))
    out = {}
  end
  local env = setmetatable({
    warren = warren, uv = uv,
    status = source.status,
    reload = function() return source.reload("repl of uid " .. uid) end,
    print = function(...)
      local parts = {}
      for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
      out[#out + 1] = table.concat(parts, "\t") .. "\n"
    end,
  }, { __index = function(_, k)
    local v = source.objects[k]
    if v ~= nil then return v end
    return _G[k]
  end })
  local ev = repl.evaluator(env)
  local lines, waiter, closed = {}, nil, false
  local function take(data)
    pending = pending .. data
    for line in pending:gmatch("([^\n]*)\n") do
      if line == "\3" then
        if ev.cancel() then log.info("control socket uid %d: cancelled the running chunk", uid) end
      else
        lines[#lines + 1] = line
      end
    end
    pending = pending:match("[^\n]*$")
  end
  log.info("control socket uid %d: attached a prompt", uid)
  warren.spawn(function()
    send("", "> ")
    while true do
      while #lines == 0 and not closed do warren.await(function(resolve) waiter = resolve end) end
      if #lines == 0 then break end
      local line = table.remove(lines, 1)
      local text, prompt
      if line == "\2" then
        ev.reset()
        text, prompt = "", "> "
      else
        log.info("control socket uid %d: repl> %s", uid, #line > 200 and line:sub(1, 200) .. "..." or line)
        text, prompt = ev.feed(line)
      end
      send(text or "", prompt)
    end
    log.info("control socket uid %d: detached", uid)
    if not pipe:is_closing() then pipe:close() end
  end)
  take("")
  pipe:read_start(function(err, data)
    if err or not data then closed = true else take(data) end
    if waiter then
      local resolve = waiter
      waiter = nil
      resolve()
    end
  end)
end

local function serve_request(source, pipe, uid, line, rest)
  local command, arg = line:match("^(%S+)%s*(%S*)")
  if command == "repl" then
    pipe:write("ok\n")
    return serve_repl(source, pipe, uid, rest)
  end
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
  local refused = not uid or (uid ~= own and uid ~= 0)
  if refused then
    log.warn("control socket: refused a peer with uid %s%s", tostring(uid), err and (" (" .. err .. ")") or "")
  end
  -- The request is read even from a refused peer: closing with its bytes unread would reset
  -- the connection, and the peer would never see why.
  local buffered = ""
  pipe:read_start(function(rerr, data)
    if rerr or not data then
      if not pipe:is_closing() then pipe:close() end
      return
    end
    buffered = buffered .. data
    local line, rest = buffered:match("^([^\n]*)\n(.*)$")
    if line then
      pipe:read_stop()
      if refused then
        answer(pipe, false, "permission denied: not the owner of this process\n")
      else
        serve_request(source, pipe, uid, line, rest)
      end
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

-- `warren repl --attach PATH`: a prompt whose chunks run inside the process on the socket. On a
-- terminal lines are edited (and kept in the history) as in the local prompt, and Ctrl-C
-- cancels the remote chunk or drops the line; on a pipe every line is sent in turn. Returns
-- true at the end of input, or nil, err.
function M.attach(path)
  local repl = require("warren.repl")
  local pipe = uv.new_pipe(false)
  local ok, cerr = warren.await(function(resolve)
    pipe:connect(path, function(err) resolve(not err, err) end)
  end, 10000)
  if not ok then
    pipe:close()
    return nil, string.format("cannot attach to %s: %s", path, tostring(cerr or "timeout"))
  end
  local incoming, closed, waiter = "", false, nil
  pipe:read_start(function(err, data)
    if err or not data then closed = true else incoming = incoming .. data end
    if waiter then
      local resolve = waiter
      waiter = nil
      resolve()
    end
  end)
  local function wait_closed()
    while not closed do warren.await(function(resolve) waiter = resolve end) end
  end
  local function wait_for(pattern)
    while true do
      local found = { incoming:find(pattern) }
      if found[1] then
        incoming = incoming:sub(found[2] + 1)
        return unpack(found, 3)
      end
      if closed then return nil end
      warren.await(function(resolve) waiter = resolve end)
    end
  end
  pipe:write("repl\n")
  local verdict = wait_for("^(%a+)\n")
  if verdict ~= "ok" then
    wait_closed() -- the reason comes up to the end of the connection
    pipe:close()
    return nil, (incoming ~= "" and incoming:gsub("\n$", "") or "the process closed the connection")
  end
  local function next_prompt()
    local text, prompt = wait_for("^(.-)\1([^\n]*)\n")
    if text and text ~= "" then
      io.stdout:write(text)
      io.stdout:flush()
    end
    return prompt
  end
  local reader, interactive = repl.reader()
  local waiting = false
  local previous_sigint = warren.on_signal("sigint", function()
    if waiting then
      pipe:write("\3\n") -- cancels the chunk running in the process
    elseif interactive then
      reader.interrupt()
    else
      warren.exit(130)
    end
  end)
  local prompt = next_prompt()
  while prompt do
    local line, read_err = reader.read(prompt)
    if line == nil and read_err ~= "interrupted" then break end
    pipe:write(line and line .. "\n" or "\2\n") -- Ctrl-C on a line drops the chunk there too
    waiting = true
    prompt = next_prompt()
    waiting = false
  end
  if interactive then io.stdout:write("\n") end
  reader.close()
  warren.on_signal("sigint", previous_sigint)
  if not pipe:is_closing() then pipe:close() end
  if not prompt then return nil, "the process closed the connection" end
  return true
end

return M
