-- luacheck: std +busted
-- The HTTP carrier (--http, http://, https://) against real peers: warren clients as processes, a
-- relay in this process (its stats), node's integrity streams (spec/helpers/integrity.js), a
-- proxy that refuses CONNECT (tinyproxy), nginx as a reverse proxy, a proxy of our own that
-- drops, delays, duplicates, reorders and resets requests or buffers every answer
-- (spec/helpers/fault_proxy.js), and probes, replays included, against a relay with a site.
local warren = require("warren")
local uv = require("luv")
local proc = require("helpers.proc")
local net = require("helpers.net")
local wait = require("helpers.wait")
local children = require("helpers.children")

local integrity_runs = require("helpers.integrity")
local integrity_js = integrity_runs.js
local fault_js = proc.source_dir .. "/spec/helpers/fault_proxy.js"
-- Streams per integrity run (each up to integrity_runs.max_bytes each way, random: about 6.5 MB
-- each way per run).
local streams = integrity_runs.streams

-- Directories this file makes, removed at its end.
local dirs = {}
local function tmpdir(mode)
  local dir = os.tmpname()
  os.remove(dir)
  assert(uv.fs_mkdir(dir, tonumber(mode or "700", 8)))
  dirs[#dirs + 1] = dir
  return dir
end

local function write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local text = f:read("*a")
  f:close()
  return text
end

local kids = children.new()
teardown(function()
  kids.stop_all()
  for _, dir in ipairs(dirs) do proc.run({ "rm", "-rf", dir }) end
end)
local spawn, start, node_server = kids.spawn, kids.start, kids.port_server
local stop, stderr_of = children.stop, children.stderr_of

local function integrity_server()
  return node_server({ "node", integrity_js, "server" }, "the integrity server")
end

local function integrity(runs)
  integrity_runs.run(spawn, runs)
end

-- A `warren -L LPORT:127.0.0.1:TARGET` client with more arguments; waits for its port.
local function forward_client(target_port, args, env)
  local lport = net.free_port()
  local all = { "-L", lport .. ":127.0.0.1:" .. target_port }
  for _, a in ipairs(args) do all[#all + 1] = a end
  local client = start(all, env)
  assert(net.wait_port(lport, 10000), stderr_of(client))
  return client, lport
end

local function count(text, pattern)
  return select(2, text:gsub(pattern, ""))
end

-- An HTTP answer without its Date field, to compare two answers of one site.
local function undated(answer)
  return (answer or ""):gsub("\r\nDate: [^\r]*", "")
end

describe("the HTTP carrier", function()
  local k, dir, relay, relay_port, fp, pool, server, server_port
  setup(function()
    k = proc.key()
    dir = tmpdir()
    pool = net.free_range(2)
    relay = assert(warren.relay({ listen = "127.0.0.1:0", key = k, tls = true, self_signed = dir .. "/relay.pem",
      ports = { pool .. "-" .. pool + 1 }, outer_bind = "127.0.0.1", max_users_per_address = 0 }))
    relay_port, fp = relay:port(), relay:fingerprint()
    server, server_port = integrity_server()
  end)
  teardown(function()
    relay:close()
    stop(server)
  end)

  local carriers = {
    { name = "--http", server = function() return { "--http", "127.0.0.1:" .. relay_port } end, outer = 0 },
    { name = "https:// (a pinned self-signed certificate)",
      server = function() return { "https://127.0.0.1:" .. relay_port, "--pin", fp } end, outer = 1 },
  }
  for _, carrier in ipairs(carriers) do
    it("carries -L, -D (SOCKS5 and HTTP CONNECT) and -R over " .. carrier.name .. ", " .. streams ..
      " streams each, SHA-256 both ways, each stream half-closed", function()
      local before = relay:stats()
      local lport, dport, outer = net.free_port(), net.free_port(), pool + carrier.outer
      local args = { "-L", lport .. ":127.0.0.1:" .. server_port, "-D", tostring(dport),
        "-R", outer .. ":127.0.0.1:" .. server_port, "--name", "integrity-" .. carrier.outer, "-k", k, "-v" }
      for _, a in ipairs(carrier.server()) do args[#args + 1] = a end
      local client = start(args)
      assert(net.wait_port(lport) and net.wait_port(dport), stderr_of(client))
      assert(wait.output(client, "relay port " .. outer, 10000), stderr_of(client))
      local target = "127.0.0.1:" .. server_port
      integrity({
        { label = "-L", target = "127.0.0.1:" .. lport },
        { label = "-D SOCKS5", target = target, via = { "socks5", "127.0.0.1:" .. dport } },
        { label = "-D CONNECT", target = target, via = { "connect", "127.0.0.1:" .. dport } },
        { label = "-R", target = "127.0.0.1:" .. outer },
      })
      local c = stop(client)
      assert.equal(0, c.code, c.stderr)
      local after = relay:stats()
      assert.equal(1, after.http_sessions - before.http_sessions)
      assert.equal(0, after.http_polls - before.http_polls) -- nothing buffers: it streamed
      assert.is_true(after.http_streams > before.http_streams)
      -- 4 runs of 100 streams: about 6.4 MB each way each
      assert.is_true(after.http_up_bytes - before.http_up_bytes > 20e6)
      assert.is_true(after.http_down_bytes - before.http_down_bytes > 20e6)
    end)
  end

  -- A regression test: large uploads used to lose one 16 KiB DATA payload now and then (3 to 4
  -- bad rounds in 30): a payload split across carrier reads was kept for a consumer that had
  -- stopped reading meanwhile, then dropped. POST bodies are the carrier's largest reads, so this
  -- carrier showed it most.
  local rounds = os.getenv("WARREN_SANITIZED") == "1" and 4 or 15
  it("carries large uploads byte-exact over --http: rounds of two 16 MiB uploads", function()
    local pattern_js = proc.source_dir .. "/spec/helpers/upload_pattern.js"
    local checker, checker_port = node_server({ "node", pattern_js, "server" }, "the pattern server")
    local bad = {}
    for round = 1, rounds do
      local client, lport = forward_client(checker_port, { "--http", "127.0.0.1:" .. relay_port, "-k", k })
      local r = proc.run({ "node", pattern_js, "client", "127.0.0.1:" .. lport, tostring(16 * 1024 * 1024), "2" },
        70000)
      if r.code ~= 0 then bad[#bad + 1] = "round " .. round .. ":\n" .. r.stdout end
      stop(client)
    end
    stop(checker)
    assert.equal("", table.concat(bad, "\n"))
  end)

  it("takes warren.client{server = 'http://...'} with a path, and a half-close reaches the target", function()
    local counter, counter_port = net.count_server()
    local data = string.rep("half-close over HTTP requests ", 40000) -- about 1.2 MB
    local c = assert(warren.client({ server = "http://127.0.0.1:" .. relay_port .. "/some/app", key = k }))
    assert(c:connect())
    local fwd = assert(c:forward({ listen = "127.0.0.1:0", target = "127.0.0.1:" .. counter_port }))
    local answer = net.exchange(fwd:port(), data, { half_close = true, timeout = 10000 })
    assert.equal("received " .. #data .. " bytes", answer)
    c:close()
    counter:close()
  end)

  it("says what the relay answered when the key is wrong", function()
    local r = proc.warren({ "--http", "-L", "127.0.0.1:0:127.0.0.1:9", "127.0.0.1:" .. relay_port,
      "-k", proc.key() }, { timeout = 15000 })
    assert.equal(1, r.code)
    assert.matches("the relay answered the HTTP carrier's first request with HTTP 404", r.stderr)
    r = proc.warren({ "-L", "127.0.0.1:0:127.0.0.1:9", "https://127.0.0.1:" .. relay_port, "--pin", fp,
      "-k", proc.key() }, { timeout = 15000 })
    assert.equal(1, r.code)
    assert.matches("the relay answered the HTTP carrier's first request with HTTP 404", r.stderr)
  end)

  -- tinyproxy with CONNECT allowed to one port nothing listens on: requests must come in
  -- absolute form, and its log (LogLevel Connect) names each one.
  it("goes through a proxy that refuses CONNECT (tinyproxy): --proxy and HTTP_PROXY, only GETs and POSTs",
    function()
      local tinyproxy_bin = "/usr/bin/tinyproxy"
      if not uv.fs_stat(tinyproxy_bin) then return pending("tinyproxy is not installed") end
      local tp_port, log_file = net.free_port(), dir .. "/tinyproxy.log"
      write(dir .. "/tinyproxy.conf", table.concat({
        "Port " .. tp_port, "Listen 127.0.0.1", "Timeout 60", "MaxClients 200", "Allow 127.0.0.1",
        "ConnectPort " .. net.free_port(), "LogFile \"" .. log_file .. "\"", "LogLevel Connect", "" }, "\n"))
      local tinyproxy = spawn({ tinyproxy_bin, "-d", "-c", dir .. "/tinyproxy.conf" })
      assert(net.wait_port(tp_port), "tinyproxy did not start: " .. table.concat({ tinyproxy:output() }))
      local before = relay:stats().http_requests

      local client, lport = forward_client(server_port, { "--http", "127.0.0.1:" .. relay_port, "--proxy",
        "http://127.0.0.1:" .. tp_port, "-k", k, "-v" })
      integrity({ { label = "-L through --proxy", target = "127.0.0.1:" .. lport } })
      local c = stop(client)
      assert.equal(0, c.code, c.stderr)
      -- tinyproxy closes every connection after one answer and drops the relay's "Connection:
      -- close": the client learns it and opens a new connection per request, and the requests
      -- that met such a close were sent again at once, none failed (each failure waits 25 ms+)
      assert.matches("a new connection for every request from now on", c.stderr)
      assert.equal(0, count(c.stderr, "request failed"), c.stderr)
      client, lport = forward_client(server_port, { "http://127.0.0.1:" .. relay_port, "-k", k },
        { HTTP_PROXY = "http://127.0.0.1:" .. tp_port })
      integrity({ { label = "-L through HTTP_PROXY", target = "127.0.0.1:" .. lport, streams = 20 } })
      c = stop(client)
      assert.equal(0, c.code, c.stderr)
      -- and it does refuse CONNECT (to a port of its own: told apart from anything of warren's)
      local curl = proc.run({ "curl", "-s", "-o", "/dev/null", "-w", "%{http_connect}", "-m", "5", "-p", "-x",
        "http://127.0.0.1:" .. tp_port, "http://127.0.0.1:9/" })
      assert.equal("403", curl.stdout)
      stop(tinyproxy)

      local log = read(log_file) or ""
      local methods, absolute = {}, 0
      for method, url in log:gmatch("Request %(file descriptor %d+%): (%u+) (%S+)") do
        if url ~= "127.0.0.1:9" then -- curl's
          methods[method] = (methods[method] or 0) + 1
          if url:find("^http://127%.0%.0%.1:" .. relay_port .. "/%?s=") then absolute = absolute + 1 end
        end
      end
      local total = (methods.GET or 0) + (methods.POST or 0)
      assert.is_true((methods.POST or 0) > 0 and (methods.GET or 0) > 0, log)
      assert.same({ GET = methods.GET, POST = methods.POST }, methods)
      assert.equal(total, absolute)
      assert.is_true(count(log, "%): CONNECT 127%.0%.0%.1:9 ") > 0, log)
      assert.equal(count(log, "%): CONNECT 127%.0%.0%.1:9 "), count(log, "%): CONNECT "), "a CONNECT from warren")
      -- every request the proxy passed on reached the relay as the carrier's
      assert.is_true(relay:stats().http_requests - before >= total)
    end)

  -- nginx in front, proxying /app to the relay, with `extra` in that location and `http_extra` in
  -- its http block; returns nginx, its port and its directory (access.log: "REQUEST X-Token").
  -- nil when nginx is not installed.
  local function nginx_front(extra, http_extra)
    local nginx_bin = "/usr/sbin/nginx"
    if not uv.fs_stat(nginx_bin) then return nil end
    local ndir, nginx_port = tmpdir("755"), net.free_port()
    assert(uv.fs_mkdir(ndir .. "/html", tonumber("755", 8)))
    write(ndir .. "/nginx.conf", ([[
daemon off;
master_process off;
worker_processes 1;
pid DIR/nginx.pid;
error_log stderr;
events { worker_connections 1024; }
http {
  log_format carrier '"$request" $status token=$http_x_token';
  access_log DIR/access.log carrier;
  client_body_temp_path DIR/tmp;
  proxy_temp_path DIR/tmp;
  fastcgi_temp_path DIR/tmp;
  uwsgi_temp_path DIR/tmp;
  scgi_temp_path DIR/tmp;
  HTTP_EXTRA
  server {
    listen 127.0.0.1:NGINX_PORT;
    root DIR/html;
    location /app {
      proxy_pass http://127.0.0.1:RELAY_PORT;
      EXTRA
    }
  }
}
]]):gsub("DIR", ndir):gsub("NGINX_PORT", nginx_port):gsub("RELAY_PORT", relay_port)
      :gsub("HTTP_EXTRA", http_extra or ""):gsub("EXTRA", extra))
    local nginx = spawn({ nginx_bin, "-p", ndir, "-e", "stderr", "-c", ndir .. "/nginx.conf" })
    assert(net.wait_port(nginx_port), "nginx did not start: " .. stderr_of(nginx))
    return nginx, nginx_port, ndir
  end

  -- twice: as it comes, and told to buffer answers whatever the relay's X-Accel-Buffering says.
  local nginx_cases = {
    { name = "with its default settings", conf = "" },
    { name = "with proxy_buffering on and X-Accel-Buffering ignored",
      conf = "proxy_buffering on;\n      proxy_ignore_headers X-Accel-Buffering;" },
  }
  for _, case in ipairs(nginx_cases) do
    it("carries -L byte-exact behind nginx " .. case.name, function()
      local nginx, nginx_port, ndir = nginx_front(case.conf)
      if not nginx then return pending("nginx is not installed") end
      local before = relay:stats()
      local client, lport = forward_client(server_port, { "http://127.0.0.1:" .. nginx_port .. "/app/x", "-k", k,
        "-v" })
      integrity({ { label = "-L behind nginx", target = "127.0.0.1:" .. lport } })
      local c = stop(client)
      stop(nginx)
      assert.equal(0, c.code, c.stderr)
      local after = relay:stats()
      local access = read(ndir .. "/access.log") or ""
      assert.is_true(count(access, '"POST /app/x%?s=') > 0 and count(access, '"GET /app/x%?s=') > 0, access)
      assert.equal(0, count(access, '"CONNECT '))
      -- What nginx does with the streaming answers, seen in both cases: even told to buffer, it
      -- passes the relay's prelude on well within the client's 3 s, so the client keeps
      -- streaming and never switches to long polls.
      assert.is_nil(c.stderr:find("long polls from now on", 1, true), c.stderr)
      assert.equal(0, after.http_polls - before.http_polls)
      assert.is_true(after.http_streams > before.http_streams)
    end)
  end

  -- A front that lets through only requests with its token: --header carries it in every request
  -- of the HTTP carrier and in the WebSocket upgrade; without it the front's 403 is what the
  -- client reports.
  it("carries --header in every request, through nginx that refuses requests without it", function()
    local nginx, nginx_port, ndir = nginx_front([[
      if ($http_x_token != "abc") { return 403; }
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;]],
      "map $http_upgrade $connection_upgrade { default upgrade; '' ''; }")
    if not nginx then return pending("nginx is not installed") end
    for _, scheme in ipairs({ "http", "ws" }) do
      local front = scheme .. "://127.0.0.1:" .. nginx_port .. "/app/x"
      local client, lport = forward_client(server_port, { front, "-k", k, "--header", "X-Token: abc",
        "--header", "X-Other: 1" })
      integrity({ { label = "-L " .. scheme .. " with --header", target = "127.0.0.1:" .. lport, streams = 10 } })
      local c = stop(client)
      assert.equal(0, c.code, c.stderr)
      local r = proc.warren({ "-L", "127.0.0.1:0:127.0.0.1:9", front, "-k", k }, { timeout = 15000 })
      assert.equal(1, r.code)
      assert.matches("403", r.stderr)
    end
    stop(nginx)
    local access = read(ndir .. "/access.log") or ""
    local posts, gets, upgrades = 0, 0, 0
    for request, status, token in access:gmatch('"(%u+ /app/x[^"]*)" (%d+) token=(%S*)') do
      local ok = status ~= "403"
      assert.equal(ok and "abc" or "-", token, request .. " " .. status)
      if ok and request:find("^POST /app/x%?s=") then posts = posts + 1 end
      if ok and request:find("^GET /app/x%?s=") then gets = gets + 1 end
      if ok and request:find("^GET /app/x HTTP") then upgrades = upgrades + 1 end
    end
    assert.is_true(posts > 0 and gets > 0 and upgrades > 0, access)
    assert.is_true(count(access, '" 403 token=%-') >= 2, access)
  end)

  it("refuses --header lines that are malformed or name a field the carrier sets", function()
    local cases = {
      { { "--http", "--header", "Host: example.com" }, "Host is the host_header option %(%-%-host%-header%)" },
      { { "-w", "--header", "Authorization: Bearer x" }, "Authorization carries the WebSocket carrier's handshake" },
      { { "--http", "--header", "content-length: 5" }, "content%-length frames the carrier's requests" },
      { { "--http", "--header", "X-A: 1\r\nX-B: 2" }, "no line breaks in a header" },
      { { "--http", "--header", "no colon here" }, "must be \"Name: value\"" },
      { { "--header", "X-Token: abc" }, "headers go in the requests of the WebSocket and HTTP carriers" },
    }
    for _, case in ipairs(cases) do
      local args = { "-L", "127.0.0.1:0:127.0.0.1:9", "127.0.0.1:" .. relay_port, "-k", k }
      for _, a in ipairs(case[1]) do args[#args + 1] = a end
      local r = proc.warren(args, { timeout = 10000 })
      assert.is_true(r.code ~= 0, r.stderr)
      assert.matches(case[2], r.stderr)
    end
  end)

  local function fault_proxy(mode, seed, record_file)
    return node_server({ "node", fault_js, tostring(relay_port), tostring(seed), mode, record_file },
      "the fault proxy")
  end

  it("stays byte-exact through a proxy that drops, delays, duplicates, reorders and resets requests", function()
    local seed = math.random(1, 1e9)
    local faults, fault_port = fault_proxy("faults", seed)
    local before = relay:stats()
    local client, lport = forward_client(server_port, { "--http", "127.0.0.1:" .. fault_port, "-k", k, "-v" })
    -- rounds one after the other: each begins with a burst of fresh requests
    for round = 1, 3 do
      integrity({ { label = "-L through faults, round " .. round .. " (seed " .. seed .. ")",
        target = "127.0.0.1:" .. lport, streams = 100, max = 65536 } })
    end
    -- the faults so far, then the client's word on them (a reset takes effect 20 ms late)
    local seen = faults:output()
    warren.sleep(500)
    local client_log = stderr_of(client)
    local c = stop(client)
    stop(faults)
    assert.equal(0, c.code, c.stderr)
    local after = relay:stats()
    local why = "seed " .. seed .. ", " .. (after.http_requests - before.http_requests) .. " requests:\n" .. seen
    for _, kind in ipairs({ "drop", "delay", "duplicate", "reorder", "reset" }) do
      assert.is_true(count(seen, "fault " .. kind) > 0, "no " .. kind .. ": " .. why)
    end
    -- a reset after the relay took a POST makes the client send its bytes again; the relay drops
    -- them by their offset
    assert.is_true(after.http_duplicates > before.http_duplicates, "no duplicates counted: " .. why)
    -- every drop and reset failed a request, which the client sent again: after a backoff, or at
    -- once when it met the close of a kept-alive connection before any answer
    local failed = count(client_log, "http carrier: %a+ request failed")
      + count(client_log, "http carrier: %a+ request met the close of a kept%-alive connection")
    assert.is_true(failed >= count(seen, "fault drop") + count(seen, "fault reset"),
      failed .. " requests failed: " .. why)
  end)

  -- The answer to the session's first request lost after the relay took it, or that request
  -- arriving twice: the client must still get its session.
  local first_faults = {
    { mode = "first-reset", what = "connects when the answer to the first request is lost" },
    -- the copy, first to arrive, makes the session; the client's own, a replay by its nonce, gets
    -- the site's answer, which the client takes for a refusal (wrong key) and gives up
    { mode = "first-duplicate", what = "connects when a proxy sends the first request twice" },
  }
  for _, case in ipairs(first_faults) do
    local mode = case.mode
    it(case.what .. " (" .. mode .. ")", function()
      if case.pending then return pending(case.pending) end
      local proxy, port = fault_proxy(mode, 1)
      local client, lport = forward_client(server_port, { "--http", "127.0.0.1:" .. port, "-k", k, "-v" })
      integrity({ { label = "-L after " .. mode, target = "127.0.0.1:" .. lport, streams = 5 } })
      local c = stop(client)
      stop(proxy)
      assert.equal(0, c.code, c.stderr)
      assert.matches("fault %a+ POST", proxy:output())
    end)
  end

  it("switches to long polls behind a proxy that buffers every answer whole, and stays byte-exact", function()
    local buffering, port = fault_proxy("buffer", 1)
    local before = relay:stats()
    local client, lport = forward_client(server_port, { "--http", "127.0.0.1:" .. port, "-k", k, "-v" })
    integrity({ { label = "-L through a buffering proxy", target = "127.0.0.1:" .. lport, streams = 50 } })
    local c = stop(client)
    stop(buffering)
    assert.equal(0, c.code, c.stderr)
    assert.matches("http carrier: the downstream answer does not stream %(a buffering proxy%?%): long polls", c.stderr)
    assert.is_true(relay:stats().http_polls - before.http_polls > 0)
  end)
end)

describe("a relay with -P DIR and the HTTP carrier", function()
  local dir, relay, port, k, server, server_port
  setup(function()
    dir = tmpdir("755")
    write(dir .. "/index.html", "<h1>an ordinary site</h1>\n")
    k = proc.key()
    relay = assert(warren.relay({ listen = "127.0.0.1:0", key = k, fallback = dir }))
    port = relay:port()
    server, server_port = integrity_server()
  end)
  teardown(function()
    relay:close()
    stop(server)
  end)

  -- The site's answer to `request`, read until the site closes (this side half-closes first).
  local function site_answer(request)
    return net.exchange(port, request, { half_close = true, timeout = 5000 })
  end

  -- The same request with the carrier's query taken out of its target.
  local function without_query(request)
    return (request:gsub("^(%u+ [^?]*)%?s=[^ ]*", "%1", 1))
  end

  -- The first request of `warren --http -k KEY` (head and body): a listener stands in for the
  -- relay and keeps it.
  local function record_first(key)
    local recorded
    local recorder, recorder_port = net.serve(function(peer)
      local got = ""
      peer:read_start(function(_, data)
        if not data then return peer:close() end
        got = got .. data
        local head_end = got:find("\r\n\r\n", 1, true)
        local length = tonumber(got:match("\r\n[Cc]ontent%-[Ll]ength: (%d+)\r\n") or "")
        if head_end and length and #got >= head_end + 3 + length then recorded = recorded or got end
      end)
    end)
    local client = start({ "--http", "-L", "127.0.0.1:0:127.0.0.1:9", "127.0.0.1:" .. recorder_port, "-k", key })
    local ok = wait.eventually(function() return recorded end, 10000)
    stop(client)
    recorder:close()
    assert(ok, "no first request was recorded: " .. stderr_of(client))
    return recorded
  end

  it("takes --http clients and serves the site to curl", function()
    local client, lport = forward_client(server_port, { "--http", "127.0.0.1:" .. port, "-k", k })
    integrity({ { label = "-L beside the site", target = "127.0.0.1:" .. lport, streams = 20 } })
    stop(client)
    local r = proc.run({ "curl", "-s", "-m", "5", "http://127.0.0.1:" .. port .. "/" })
    assert.equal("<h1>an ordinary site</h1>\n", r.stdout)
  end)

  it("gives a wrong key the site's answer, and says so", function()
    local r = proc.warren({ "--http", "-L", "127.0.0.1:0:127.0.0.1:9", "127.0.0.1:" .. port, "-k", proc.key() },
      { timeout = 15000 })
    assert.equal(1, r.code)
    assert.matches("the relay answered the HTTP carrier's first request with HTTP %d+", r.stderr)
    assert.is_nil(r.stderr:find("HTTP 200 OK", 1, true))
  end)

  it("gives a request without the key, and a forged one, exactly what the site gives", function()
    local plain = site_answer("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert.matches("^HTTP/1%.1 200 OK\r\n.*<h1>an ordinary site</h1>\n$", plain)
    local garbage = site_answer("GET /?s=AAAAAAAAAAAAAAAAAAAAAA&k=d&o=0&n=AAAAAAAAAAA&t=AAAAAAAAAAAAAAAAAAAAAA " ..
      "HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert.equal(undated(plain), undated(garbage))
    -- a real client's first request, made with another key
    local forged = record_first(proc.key())
    assert.matches("^POST /%?s=[%w_-]+&k=u&o=0&n=[%w_-]+&t=[%w_-]+ HTTP/1%.1\r\n", forged)
    local answer = site_answer(forged)
    assert.is_nil(answer:find("ETag", 1, true), answer)
    assert.equal(undated(site_answer(without_query(forged))), undated(answer))
  end)

  it("gives a replayed first request exactly what the site gives", function()
    local recorded = record_first(k)
    -- Its first showing is a real client's: the carrier's 200 with the proof. Shown again, it is a
    -- replay: the site's answer, as to the same request without the query.
    local first = net.exchange(port, recorded, { timeout = 2000, want = 12 })
    assert.matches("^HTTP/1%.1 200", first)
    local replay = site_answer(recorded)
    assert.is_nil(replay:find("ETag: \"", 1, true), replay)
    assert.equal(undated(site_answer(without_query(recorded))), undated(replay))
  end)

  it("gives a replayed later request exactly what the site gives, while its session lives and after", function()
    local record_file = os.tmpname()
    os.remove(record_file)
    local recorder, recorder_port = node_server({ "node", fault_js, tostring(port), "1", "pass", record_file },
      "the recording proxy")
    local client, lport = forward_client(server_port, { "--http", "127.0.0.1:" .. recorder_port, "-k", k })
    integrity({ { label = "-L through the recording proxy", target = "127.0.0.1:" .. lport, streams = 10 } })
    local recorded = read(record_file)
    os.remove(record_file)
    assert(recorded, "no later request was recorded")
    assert.matches("^POST /%?s=[%w_-]+&k=u&o=[1-9]%d*&n=", recorded)
    local expected = undated(site_answer(without_query(recorded)))
    local during = site_answer(recorded)
    assert.equal(expected, undated(during))
    local c = stop(client)
    stop(recorder)
    assert.equal(0, c.code, c.stderr)
    assert.equal(expected, undated(site_answer(recorded)))
  end)
end)
