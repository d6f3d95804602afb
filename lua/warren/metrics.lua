-- A Prometheus endpoint: `GET /metrics` answers the text exposition format (0.0.4) with the
-- counters of what the process runs (a generation of warren.declare: its relay, its client and
-- its named tunnels) and of the access log. Labels are bounded: `tunnel` takes only the names of
-- declared tunnels (a command line's are named by their flags), never anything a peer chose.
-- Anything but GET or HEAD of /metrics gets 404 (405 for other methods); request heads over
-- 8 KiB are refused with 431; a client that does not finish its request in 10 s is dropped.
local addr = require("warren.addr")
local core = require("warren.core")
local log = require("warren.log")
local uv = require("luv")

local M = {}

local HEAD_MAX = 8192
local REQUEST_TIMEOUT_MS = 10000
local MAX_CLIENTS = 64

-- ---- the exposition format ----

-- A label value: backslash, double quote and line feed escaped (the format's three).
function M.escape_label(v)
  return (tostring(v):gsub("[\\\"\n]", { ["\\"] = "\\\\", ['"'] = '\\"', ["\n"] = "\\n" }))
end

local function number(v)
  if v == math.huge then return "+Inf" end
  if v == -math.huge then return "-Inf" end
  if v ~= v then return "NaN" end
  if v == math.floor(v) and math.abs(v) < 2 ^ 53 then return string.format("%d", v) end
  return string.format("%.15g", v)
end

-- Collects families in order; each sample is added to the family of its name.
local Writer = {}
Writer.__index = Writer

local function new_writer() return setmetatable({ families = {}, order = {} }, Writer) end

-- w:add(name, type, help, value[, labels]): labels is a list of {name, value} pairs.
function Writer:add(name, kind, help, value, labels)
  if value == nil then return end
  local f = self.families[name]
  if not f then
    f = { kind = kind, help = help, samples = {} }
    self.families[name] = f
    self.order[#self.order + 1] = name
  end
  local text = name
  if labels and #labels > 0 then
    local parts = {}
    for i, l in ipairs(labels) do parts[i] = string.format('%s="%s"', l[1], M.escape_label(l[2])) end
    text = text .. "{" .. table.concat(parts, ",") .. "}"
  end
  f.samples[#f.samples + 1] = text .. " " .. number(tonumber(value) or 0)
end

function Writer:text()
  local out = {}
  for _, name in ipairs(self.order) do
    local f = self.families[name]
    out[#out + 1] = "# HELP " .. name .. " " .. f.help:gsub("\\", "\\\\"):gsub("\n", "\\n")
    out[#out + 1] = "# TYPE " .. name .. " " .. f.kind
    for _, s in ipairs(f.samples) do out[#out + 1] = s end
  end
  out[#out + 1] = ""
  return table.concat(out, "\n")
end

-- ---- what is measured ----

local function relay_metrics(w, relay)
  local st = relay:stats()
  w:add("warren_relay_sessions", "gauge", "Sessions open on the relay.", st.sessions_active)
  w:add("warren_relay_sessions_total", "counter", "Sessions the relay has taken (any carrier).",
    st.sessions_total)
  -- The carriers the front door and the UDP port count; raw TCP is the rest.
  local by_carrier = { { "tls", st.front_tls }, { "websocket", st.front_websocket },
    { "http", st.http_sessions }, { "kcp", st.kcp_sessions } }
  for _, c in ipairs(by_carrier) do
    w:add("warren_relay_carrier_connections_total", "counter",
      "Connections handed to the relay's sessions by carrier (TLS connections, WebSocket upgrades, "
      .. "HTTP-carrier sessions, KCP sessions).", c[2], { { "carrier", c[1] } })
  end
  w:add("warren_relay_handshakes_total", "counter", "Handshakes by result.", st.handshakes_ok,
    { { "result", "ok" } })
  w:add("warren_relay_handshakes_total", "counter", "Handshakes by result.", st.handshakes_failed,
    { { "result", "failed" } })
  local reasons = {}
  for reason in pairs(st.handshake_failures) do reasons[#reasons + 1] = reason end
  table.sort(reasons)
  for _, reason in ipairs(reasons) do
    w:add("warren_relay_handshake_failures_total", "counter",
      "Failed handshakes by reason: key (a wrong key or a probe), replay, clock, malformed, cipher, "
      .. "timeout, closed (by the peer), internal.", st.handshake_failures[reason], { { "reason", reason } })
  end
  w:add("warren_relay_unauthenticated_dropped_total", "counter",
    "Connections without the key dropped to make room, by budget.", st.dropped_unauthenticated,
    { { "budget", "total" } })
  w:add("warren_relay_unauthenticated_dropped_total", "counter",
    "Connections without the key dropped to make room, by budget.", st.dropped_per_address,
    { { "budget", "address" } })
  w:add("warren_relay_unauthenticated", "gauge", "Connections that have not shown the key yet.",
    st.unauthenticated)
  w:add("warren_relay_front_timeouts_total", "counter", "Connections the front door gave up on.",
    st.front_timeouts)
  w:add("warren_relay_streams", "gauge", "Streams of -L/-D being dialled or relayed by the relay.",
    st.streams_active)
  w:add("warren_relay_streams_total", "counter", "Streams clients opened (-L/-D and control).",
    st.streams_total)
  w:add("warren_relay_streams_denied_total", "counter", "Streams the dial policy refused.",
    st.streams_denied)
  w:add("warren_relay_dials_failed_total", "counter", "Streams whose target could not be dialled.",
    st.dials_failed)
  for _, d in ipairs({ "up", "down" }) do
    w:add("warren_relay_stream_bytes_total", "counter",
      "Bytes of ended -L/-D streams, up (client to target) and down.", st["bytes_" .. d], { { "direction", d } })
  end
  w:add("warren_relay_reverse_services", "gauge", "Reverse-tunnel services registered.", st.services)
  w:add("warren_relay_reverse_ports_in_use", "gauge", "Outer ports held by services (live or leased).",
    st.services)
  w:add("warren_relay_reverse_ports", "gauge", "Outer ports in the pool.", #relay.registry.sorted)
  w:add("warren_relay_reverse_users", "gauge", "Users connected to outer ports.", st.reverse_users_active)
  w:add("warren_relay_reverse_users_total", "counter", "Users let in on outer ports.", st.reverse_users_total)
  w:add("warren_relay_reverse_users_refused_total", "counter",
    "Users refused on outer ports (limits, hooks, no session).", st.reverse_users_refused)
  for _, d in ipairs({ "up", "down" }) do
    w:add("warren_relay_reverse_bytes_total", "counter",
      "Bytes of reverse-tunnel users, up (user to service) and down.", st["reverse_bytes_" .. d],
      { { "direction", d } })
  end
  -- The HTTP and KCP carriers' own counters, when they run.
  local http = { { "http_requests", "requests" }, { "http_polls", "polls" }, { "http_duplicates", "duplicates" } }
  for _, c in ipairs(http) do
    w:add("warren_relay_http_" .. c[2] .. "_total", "counter", "HTTP carrier: " .. c[2] .. ".", st[c[1]])
  end
  w:add("warren_relay_http_sessions", "gauge", "HTTP carrier: sessions open.", st.http_sessions_active)
  for _, d in ipairs({ "up", "down" }) do
    w:add("warren_relay_http_bytes_total", "counter", "HTTP carrier: payload bytes by direction.",
      st["http_" .. d .. "_bytes"], { { "direction", d } })
  end
  w:add("warren_relay_kcp_conversations", "gauge", "KCP: conversations open.", st.kcp_conversations)
  local kcp = { "refused", "rebinds", "send_errors", "retransmits", "fast_retransmits", "lost_segments",
    "duplicates", "segments_sent", "segments_received" }
  for _, k in ipairs(kcp) do
    w:add("warren_relay_kcp_" .. k .. "_total", "counter", "KCP: " .. k:gsub("_", " ") .. ".", st["kcp_" .. k])
  end
end

local function client_metrics(w, client)
  local session = client.session
  w:add("warren_client_connected", "gauge", "1 while the session to the relay is up.", session and 1 or 0)
  if not session then return end
  local st = session:stats()
  w:add("warren_client_streams", "gauge", "Streams open in the session.", st.streams_active)
  w:add("warren_client_streams_total", "counter", "Streams this session opened.", st.streams_opened)
  w:add("warren_client_session_bytes_total", "counter", "Bytes of the session's carrier by direction.",
    st.bytes_in, { { "direction", "in" } })
  w:add("warren_client_session_bytes_total", "counter", "Bytes of the session's carrier by direction.",
    st.bytes_out, { { "direction", "out" } })
  w:add("warren_client_rtt_seconds", "gauge", "Round trip to the relay, from keepalives.",
    st.rtt_ms and st.rtt_ms / 1000)
  w:add("warren_client_reverse_connections", "gauge", "Users of -R services being relayed.", st.reverse_active)
  w:add("warren_client_reverse_connections_total", "counter", "Users of -R services dialled.", st.reverse_total)
  w:add("warren_client_reverse_failed_total", "counter", "-R dials to the inner service that failed.",
    st.reverse_failed)
end

local function tunnel_metrics(w, tunnels)
  local names = {}
  for name in pairs(tunnels) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    local t = tunnels[name]
    local kind = t.spec.kind
    local labels = { { "tunnel", name }, { "kind", kind } }
    if kind == "R" then
      w:add("warren_tunnel_up", "gauge", "1 while the tunnel is open (a -R: registered).",
        t.obj.state == "active" and 1 or 0, labels)
    else
      local s = t.obj:stats()
      w:add("warren_tunnel_up", "gauge", "1 while the tunnel is open (a -R: registered).", 1, labels)
      w:add("warren_tunnel_connections", "gauge", "Connections open on the tunnel.", s.active, labels)
      w:add("warren_tunnel_connections_total", "counter", "Connections the tunnel let in.", s.accepted, labels)
      local refused = (s.refused or 0) + (s.refused_busy or 0) + (s.refused_total or 0)
        + (s.refused_address or 0) + (s.denied or 0) + (s.bad_requests or 0)
      w:add("warren_tunnel_refused_total", "counter",
        "Connections refused (limits, no session, bad proxy requests).", refused, labels)
      w:add("warren_tunnel_failed_opens_total", "counter", "Connections the relay could not open.",
        s.failed_opens, labels)
      for _, d in ipairs({ "up", "down" }) do
        w:add("warren_tunnel_bytes_total", "counter", "Bytes of ended connections by direction.",
          s["bytes_" .. d], { labels[1], labels[2], { "direction", d } })
      end
    end
  end
end

-- The exposition text for a generation (anything with relay, client and tunnels fields).
function M.render(gen)
  local w = new_writer()
  if gen and gen.relay then relay_metrics(w, gen.relay) end
  if gen and gen.client then client_metrics(w, gen.client) end
  if gen and gen.tunnels then tunnel_metrics(w, gen.tunnels) end
  local al = core.access_log_stats()
  w:add("warren_access_log_records_total", "counter", "Access records written to the buffer.", al.records)
  w:add("warren_access_log_dropped_total", "counter", "Access records dropped: the buffer was full.",
    al.dropped)
  w:add("warren_access_log_write_errors_total", "counter", "Access log writes that failed.", al.write_errors)
  w:add("warren_buffer_bytes", "gauge", "Bytes held in the process's relay buffers.", core.buffers().held)
  return w:text()
end

-- ---- the HTTP side ----

local reasons = { [200] = "OK", [404] = "Not Found", [405] = "Method Not Allowed",
  [400] = "Bad Request", [431] = "Request Header Fields Too Large" }

local function respond(client, status, body, head_only, extra)
  local text = string.format("HTTP/1.1 %d %s\r\nContent-Length: %d\r\nConnection: close\r\n%s\r\n",
    status, reasons[status], #body, extra or "Content-Type: text/plain; charset=utf-8\r\n")
  client:write(head_only and text or (text .. body), function()
    if client:is_closing() then return end
    client:shutdown(function() if not client:is_closing() then client:close() end end)
  end)
end

-- Answers one request head (the bytes up to its blank line).
local function answer(client, head, source)
  local method, target = head:match("^(%u+) (%S+) HTTP/1%.[01]\r\n")
  if not method then return respond(client, 400, "bad request\n") end
  local path = target:match("^[^?]*")
  if path ~= "/metrics" then return respond(client, 404, "not found\n", method == "HEAD") end
  if method ~= "GET" and method ~= "HEAD" then
    return respond(client, 405, "GET or HEAD\n", false, "Allow: GET, HEAD\r\nContent-Type: text/plain\r\n")
  end
  local ok, body = pcall(M.render, source())
  if not ok then
    log.error("metrics: %s", tostring(body))
    body = ""
  end
  respond(client, 200, body, method == "HEAD", "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n")
end

-- "9100" or ":9100" is 127.0.0.1:9100; anything else must name its host. Returns {host, port}
-- or nil, err.
function M.parse_address(text)
  if type(text) ~= "string" then return nil, "metrics address must be a string such as \"127.0.0.1:9100\"" end
  local port = text:match("^:?(%d+)$")
  if port then text = "127.0.0.1:" .. port end
  local a, err = addr.parse(text, { allow_zero = true, listen = true, what = "metrics address" })
  if not a then return nil, err end
  if a.host == "" then a.host = "127.0.0.1" end
  return a
end

-- Serves /metrics on address for source() (a function returning the generation). Returns the
-- server (:port(), :close()) or nil, err.
function M.serve(address, source)
  local a, err = M.parse_address(address)
  if not a then return nil, err end
  local server = uv.new_tcp()
  local ok, berr = server:bind(a.host, a.port)
  if not ok then
    server:close()
    return nil, string.format("metrics: cannot listen on %s: %s", address, berr)
  end
  local clients = 0
  local lok, lerr = server:listen(64, function(e)
    if e then return end
    local client = uv.new_tcp()
    if not server:accept(client) or clients >= MAX_CLIENTS then
      client:close()
      return
    end
    clients = clients + 1
    local timer = uv.new_timer()
    local buf, counted = "", true
    local function done() -- the request is over (answered or dropped): once
      if not counted then return end
      counted = false
      timer:close()
      clients = clients - 1
    end
    local function drop()
      if not client:is_closing() then client:close() end
    end
    timer:start(REQUEST_TIMEOUT_MS, 0, function()
      drop()
      done()
    end)
    client:read_start(function(rerr, data)
      if rerr or not data then
        drop()
        done()
        return
      end
      buf = buf .. data
      local stop = buf:find("\r\n\r\n", 1, true)
      if not stop and #buf <= HEAD_MAX then return end
      client:read_stop()
      done()
      if stop and stop + 3 <= HEAD_MAX then
        answer(client, buf:sub(1, stop + 1), source)
      else
        respond(client, 431, "request head too large\n")
      end
    end)
  end)
  if not lok then
    server:close()
    return nil, string.format("metrics: cannot listen on %s: %s", address, lerr)
  end
  local bound = server:getsockname()
  log.info("metrics on http://%s/metrics", addr.format({ host = a.host, port = bound.port }))
  return {
    port = function() return bound.port end,
    close = function() if not server:is_closing() then server:close() end end,
  }
end

return M
