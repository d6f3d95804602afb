-- luacheck: std +busted
-- --metrics and metrics = ...: the Prometheus endpoint of a relay and of a client, read with curl
-- while traffic goes through; every answer is checked by a strict parser of the text format
-- (0.0.4) written here, and by promtool when it is installed.
local proc = require("helpers.proc")
local net = require("helpers.net")
local wait = require("helpers.wait")
local uv = require("luv")

local metric_name = "^[%a_:][%w_:]*$"
local label_name = "^[%a_][%w_]*$"
local types = { counter = true, gauge = true, histogram = true, summary = true, untyped = true }

-- A label set `{a="x",b="y"}` starting at position i of line: a table and the position after it.
local function parse_labels(line, i)
  local labels = {}
  assert(line:sub(i, i) == "{")
  i = i + 1
  if line:sub(i, i) == "}" then return labels, i + 1 end
  while true do
    local name, after = line:match("^([^=]+)=()", i)
    assert(name and name:match(label_name), "bad label name at " .. i .. ": " .. line)
    assert(labels[name] == nil, "label " .. name .. " twice: " .. line)
    i = after
    assert(line:sub(i, i) == '"', "unquoted label value: " .. line)
    i = i + 1
    local parts = {}
    while true do
      local c = line:sub(i, i)
      assert(c ~= "" and c ~= "\n", "unterminated label value: " .. line)
      if c == '"' then break end
      if c == "\\" then
        local e = line:sub(i + 1, i + 1)
        local map = { ["\\"] = "\\", ['"'] = '"', n = "\n" }
        assert(map[e], "bad escape \\" .. e .. " in " .. line)
        parts[#parts + 1] = map[e]
        i = i + 2
      else
        parts[#parts + 1] = c
        i = i + 1
      end
    end
    labels[name] = table.concat(parts)
    i = i + 1
    local sep = line:sub(i, i)
    if sep == "}" then return labels, i + 1 end
    assert(sep == ",", "expected , or } in " .. line)
    i = i + 1
  end
end

local function parse_value(v)
  if v == "+Inf" then return math.huge end
  if v == "-Inf" then return -math.huge end
  if v == "NaN" then return 0 / 0 end
  assert(v:match("^[-+]?%d*%.?%d+[eE]?[-+]?%d*$"), "bad value " .. v)
  return assert(tonumber(v), "bad value " .. v)
end

local function label_key(labels)
  local keys = {}
  for k in pairs(labels) do keys[#keys + 1] = k end
  table.sort(keys)
  local parts = {}
  for i, k in ipairs(keys) do parts[i] = k .. "=" .. labels[k] end
  return table.concat(parts, "\0")
end

-- Parses an exposition text strictly; returns {family = {type, help, samples = {[labelkey] = value}}}.
local function parse_exposition(text)
  assert(text:sub(-1) == "\n", "the text must end with a line feed")
  local families, current, seen_families = {}, nil, {}
  for line in text:gmatch("([^\n]*)\n") do
    assert(line ~= "", "empty line")
    local help_name, help = line:match("^# HELP (%S+) (.*)$")
    local type_name, kind = line:match("^# TYPE (%S+) (%S+)$")
    if help_name then
      assert(help_name:match(metric_name), "bad name " .. help_name)
      assert(not seen_families[help_name], "family " .. help_name .. " appears twice")
      seen_families[help_name] = true
      current = { help = help, samples = {} }
      families[help_name] = current
      current.name = help_name
    elseif type_name then
      assert(current and current.name == type_name and not current.type, "TYPE without its HELP: " .. line)
      assert(types[kind], "bad type " .. kind)
      assert(next(current.samples) == nil, "TYPE after samples: " .. line)
      current.type = kind
    else
      assert(line:sub(1, 1) ~= "#", "unknown comment: " .. line)
      local name, i = line:match("^([%a_:][%w_:]*)()")
      assert(name, "bad sample line: " .. line)
      assert(current and current.name == name and current.type, "sample outside its family: " .. line)
      local labels = {}
      if line:sub(i, i) == "{" then labels, i = parse_labels(line, i) end
      local value = line:match("^ (%S+)$", i) or line:match("^ (%S+) %-?%d+$", i)
      assert(value, "bad value part: " .. line)
      local key = label_key(labels)
      assert(current.samples[key] == nil, "sample twice: " .. line)
      current.samples[key] = parse_value(value)
      current.labels = current.labels or {}
      current.labels[key] = labels
    end
  end
  for name, f in pairs(families) do
    assert(f.type, name .. " has no TYPE")
    if f.type == "counter" then assert(name:match("_total$"), "counter " .. name .. " must end in _total") end
    for _, v in pairs(f.samples) do
      if f.type == "counter" then assert(v >= 0, name .. " is negative") end
    end
  end
  return families
end

-- The value of name{labels} (nil when absent).
local function value(families, name, labels)
  local f = families[name]
  return f and f.samples[label_key(labels or {})]
end

local function curl(args)
  local spec = { "curl", "-sS", "-m", "10" }
  for _, a in ipairs(args) do spec[#spec + 1] = a end
  return proc.run(spec, 15000)
end

local function scrape(port)
  local r = curl({ "-D", "-", "http://127.0.0.1:" .. port .. "/metrics" })
  assert.equal(0, r.code, r.stderr)
  local head, body = r.stdout:match("^(.-\r\n)\r\n(.*)$")
  assert.matches("^HTTP/1.1 200 OK\r\n", head)
  assert.matches("\r\nContent%-Type: text/plain; version=0.0.4; charset=utf%-8\r\n", head)
  return parse_exposition(body), body
end

local promtool = uv.fs_access("/usr/bin/promtool", "x") and "/usr/bin/promtool"

local function promtool_check(body)
  if not promtool then return end
  local r = proc.run({ promtool, "check", "metrics", stdin = body }, 15000)
  -- promtool's lint only advises (it exits 1 on lint advice such as a missing unit suffix): any
  -- problem it finds is named on stderr; a text it cannot parse says "error while linting".
  assert.is_nil(r.stderr:find("error while linting", 1, true), r.stderr)
  assert.equal("", r.stdout .. r.stderr, "promtool: " .. r.stdout .. r.stderr)
end

describe("the metrics endpoint", function()
  local body = string.rep("m", 5000)
  local answer_bytes = #("HTTP/1.1 200 OK\r\nContent-Length: 5000\r\nConnection: close\r\n\r\n") + 5000
  local origin, origin_port, seen
  setup(function() origin, origin_port, seen = net.http_server(body) end)
  teardown(function() origin:close() end)

  it("counts sessions, streams, bytes and tunnels as curl goes through, in the text format", function()
    local k = proc.key()
    local from = net.free_range(1)
    local relay_metrics, client_metrics = net.free_port(), net.free_port()
    local relay, relay_port = proc.serve({ "-k", k, "--ports", from .. "-" .. from, "--outer-bind", "127.0.0.1",
      "--metrics", tostring(relay_metrics) })
    assert(wait.eventually(function()
      return select(2, relay:output()):find("metrics on http://127.0.0.1:" .. relay_metrics .. "/metrics", 1, true)
    end, 5000), select(2, relay:output()))
    local lport, dport = net.free_port(), net.free_port()
    local client = proc.start({ proc.warren_bin, "-L", lport .. ":127.0.0.1:" .. origin_port, "-D", tostring(dport),
      "-R", from .. ":127.0.0.1:" .. origin_port, "--name", "web", "127.0.0.1:" .. relay_port, "-k", k,
      "--metrics", "127.0.0.1:" .. client_metrics, "--access-log", "/dev/null" })
    assert(wait.output(client, "web: relay port", 10000), select(2, client:output()))
    assert(net.wait_port(client_metrics))

    local lname = "-L 127.0.0.1:" .. lport
    local L = { { "tunnel", lname }, { "kind", "L" } }
    local function labels(list, extra)
      local t = {}
      for _, l in ipairs(list) do t[l[1]] = l[2] end
      for key, v in pairs(extra or {}) do t[key] = v end
      return t
    end
    local before, text = scrape(client_metrics)
    promtool_check(text)
    assert.equal(1, value(before, "warren_client_connected"))
    assert.equal(0, value(before, "warren_tunnel_connections_total", labels(L)))
    assert.equal(1, value(before, "warren_tunnel_up", { tunnel = "web", kind = "R" }))
    local rbefore, rtext = scrape(relay_metrics)
    promtool_check(rtext)
    assert.equal(1, value(rbefore, "warren_relay_sessions"))
    assert.equal(1, value(rbefore, "warren_relay_reverse_ports_in_use"))
    assert.is_not_nil(value(rbefore, "warren_relay_handshakes_total", { result = "failed" }))
    -- a probe that does not hold the key is counted by why it failed
    assert.equal(0, value(rbefore, "warren_relay_handshake_failures_total", { reason = "key" }))
    net.exchange(relay_port, string.rep("\143", 600), { timeout = 300 })
    assert(wait.eventually(function()
      return value(scrape(relay_metrics), "warren_relay_handshake_failures_total", { reason = "key" }) == 1
    end, 5000), "no handshake failure counted with reason key")

    for _, url in ipairs({ "http://127.0.0.1:" .. lport .. "/L", "http://127.0.0.1:" .. from .. "/R" }) do
      assert.equal(0, curl({ "-o", "/dev/null", url }).code)
    end
    assert.equal(0, curl({ "-o", "/dev/null", "-x", "socks5h://127.0.0.1:" .. dport,
      "http://127.0.0.1:" .. origin_port .. "/D" }).code)
    local head
    for _, h in ipairs(seen) do if h:match("^GET /L ") then head = #h end end

    local after
    assert(wait.eventually(function()
      after = scrape(client_metrics)
      return value(after, "warren_tunnel_bytes_total", labels(L, { direction = "down" })) == answer_bytes
        and value(after, "warren_client_reverse_connections_total") == 1
        and value(after, "warren_access_log_records_total") == 3
    end, 10000), "the client's counters did not move")
    assert.equal(1, value(after, "warren_tunnel_connections_total", labels(L)))
    assert.equal(0, value(after, "warren_tunnel_connections", labels(L)))
    assert.equal(head, value(after, "warren_tunnel_bytes_total", labels(L, { direction = "up" })))
    assert.equal(1, value(after, "warren_tunnel_connections_total", { tunnel = "-D 127.0.0.1:" .. dport, kind = "D" }))
    assert.is_true(value(after, "warren_client_streams_total") > value(before, "warren_client_streams_total"))
    local rafter
    assert(wait.eventually(function()
      rafter = scrape(relay_metrics)
      return value(rafter, "warren_relay_stream_bytes_total", { direction = "down" }) == 2 * answer_bytes
        and value(rafter, "warren_relay_reverse_users_total") == 1
    end, 10000), "the relay's counters did not move")
    assert.equal(value(rbefore, "warren_relay_streams_total") + 2, value(rafter, "warren_relay_streams_total"))
    assert.equal(answer_bytes, value(rafter, "warren_relay_reverse_bytes_total", { direction = "down" }))
    assert.equal(0, value(rafter, "warren_access_log_records_total")) -- the relay logs no access
    client:kill(); relay:kill()
    client:wait(5000); relay:wait(5000)
  end)

  it("answers only GET and HEAD of /metrics, and refuses a long request head", function()
    local mport = net.free_port()
    local k = proc.key()
    local relay = proc.serve({ "-k", k, "--metrics", tostring(mport) })
    assert(net.wait_port(mport))
    local base = "http://127.0.0.1:" .. mport
    local r = curl({ "-o", "/dev/null", "-w", "%{http_code}", base .. "/" })
    assert.equal("404", r.stdout)
    assert.equal("404", curl({ "-o", "/dev/null", "-w", "%{http_code}", base .. "/metrics/x" }).stdout)
    assert.equal("405", curl({ "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", base .. "/metrics" }).stdout)
    r = curl({ "-I", base .. "/metrics?x=1" })
    assert.matches("^HTTP/1.1 200 OK\r\n", r.stdout)
    local length = tonumber(r.stdout:match("Content%-Length: (%d+)"))
    assert.is_true(length > 1000)
    local full = curl({ base .. "/metrics" }).stdout
    assert.is_true(math.abs(#full - length) < 200) -- the same text, give or take a counter
    local reply = net.exchange(mport, "GET /metrics HTTP/1.1\r\nX-Pad: " .. string.rep("a", 9000) .. "\r\n\r\n")
    assert.matches("^HTTP/1.1 431 ", reply)
    reply = net.exchange(mport, "nonsense\r\n\r\n")
    assert.matches("^HTTP/1.1 400 ", reply)
    relay:kill()
    relay:wait(5000)
  end)

  it("takes metrics = ... in a script and escapes tunnel names in labels", function()
    local k = proc.key()
    local relay, relay_port = proc.serve({ "-k", k })
    local mport, lport = net.free_port(), net.free_port()
    local name = 'a "quoted" \\ name\nover two lines'
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write(string.format("return { server = %q, key = %q, metrics = %q, tunnels = { [%q] = { L = %q } } }\n",
      "127.0.0.1:" .. relay_port, k, "127.0.0.1:" .. mport, name, lport .. ":127.0.0.1:" .. origin_port))
    f:close()
    local client = proc.start({ proc.warren_bin, "run", script })
    assert(wait.eventually(function() return select(2, client:output()):find("metrics on", 1, true) end, 10000),
      select(2, client:output()))
    local families, text = scrape(mport)
    promtool_check(text)
    assert.equal(1, value(families, "warren_tunnel_up", { tunnel = name, kind = "L" }))
    client:kill(); relay:kill()
    client:wait(5000); relay:wait(5000)
    os.remove(script)
  end)

  it("refuses a bad address, and listens elsewhere than loopback only when told", function()
    local r = proc.warren({ "serve", "127.0.0.1:1", "-k", proc.key(), "--metrics", "nowhere:x" })
    assert.equal(2, r.code)
    assert.matches("%-%-metrics: ", r.stderr)
    local mport = net.free_port()
    local relay = proc.serve({ "-k", proc.key(), "--metrics", "0.0.0.0:" .. mport })
    assert(wait.eventually(function()
      return select(2, relay:output()):find("metrics on http://0.0.0.0:" .. mport, 1, true)
    end, 5000), select(2, relay:output()))
    relay:kill()
    relay:wait(5000)
  end)
end)
