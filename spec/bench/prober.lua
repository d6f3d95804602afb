-- prober.lua: the differential prober of the fallback site. The same probes go to a relay with
-- `-P http://SITE` and, through a plain TCP forwarder (socat), to the same site; whatever a prober
-- sees must not tell the two apart: the bytes that come back (apart from the Date header) and the
-- way each connection ends (FIN, reset, or still open at the timeout).
--
--   warren run spec/bench/prober.lua [--quick] [--probes N] [--seed S] [--concurrency C]
--       [--timeout MS] [--site warren|nginx|python] [--forwarder socat|builtin] [--show N]
--       [--ports FIRST]
--
-- Probes: random bytes of random lengths; a recorded real handshake (a warren client's, and a TLS
-- client's ClientHello), whole, truncated and with bits flipped; every HTTP method; malformed
-- HTTP; oversized heads; bodies by Content-Length and chunked, pipelined; and any of them sent
-- slowly in pieces, with or without a half-close. --quick: 1000 probes with short timeouts, for
-- CI (spec/runtime/prober_spec.lua); the default is 5000.
--
-- The site is warren's own static site (-P DIR) unless --site says nginx (if installed) or python
-- (python3 -m http.server). socat runs with -t 30, so that a half-close is carried as the relay
-- carries it (socat's default ends both directions 0.5 s after the first EOF); --forwarder
-- builtin is a forwarder on luv in this process, for machines without socat. The relay does not
-- take TLS in this run: with --tls a ClientHello would be answered by the relay, on purpose.
--
-- --ports FIRST: the ports FIRST to FIRST+4 are used (the site, the relay, the forwarder, and
-- two forwards of the recorded clients); otherwise ports the kernel says are free.
--
-- The last line is "probes=N differences=D ..."; exit status 1 when D > 0.
local warren = require("warren")
local uv = require("luv")

local function usage(msg)
  io.stderr:write("prober.lua: ", msg, "\n", "usage: warren run prober.lua [--quick] [--probes N] [--seed S]",
    " [--concurrency C] [--timeout MS] [--site warren|nginx|python] [--forwarder socat|builtin] [--show N]",
    " [--ports FIRST]\n")
  os.exit(2)
end

local opts = { probes = nil, seed = nil, concurrency = 24, timeout = nil, site = "warren", forwarder = nil, show = 5,
  ports = nil }
do
  local args, i = { ... }, 1
  while args[i] do
    local flag = args[i]
    if flag == "--quick" then
      opts.quick = true
      i = i + 1
    else
      local name, value = flag:match("^%-%-(%a+)$"), args[i + 1]
      local known = { probes = 1, seed = 1, concurrency = 1, timeout = 1, site = 1, forwarder = 1, show = 1, ports = 1 }
      if not known[name] or value == nil then usage("bad argument " .. flag) end
      if name == "site" or name == "forwarder" then
        opts[name] = value
      else
        opts[name] = tonumber(value) or usage(flag .. " needs a number")
      end
      i = i + 2
    end
  end
end
opts.probes = opts.probes or (opts.quick and 1000 or 5000)
opts.timeout = opts.timeout or (opts.quick and 1200 or 3000)
opts.seed = opts.seed or os.time()
local function on_path(prog)
  for dir in (os.getenv("PATH") or ""):gmatch("[^:]+") do
    if uv.fs_access(dir .. "/" .. prog, "X") then return dir .. "/" .. prog end
  end
end
opts.forwarder = opts.forwarder or (on_path("socat") and "socat" or "builtin")

local WARREN = uv.exepath()
local tmp = os.tmpname()
os.remove(tmp)
assert(uv.fs_mkdir(tmp, tonumber("700", 8)))
local children = {}

local function write_file(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

local function cleanup()
  for _, child in ipairs(children) do
    if not child.handle:is_closing() then child.handle:kill("sigterm") end
  end
  os.execute("rm -rf '" .. tmp .. "'")
end

local function fail(msg)
  io.stderr:write("prober.lua: ", msg, "\n")
  cleanup()
  os.exit(2)
end

local function spawn(cmd, args)
  local out, err_pipe = uv.new_pipe(false), uv.new_pipe(false)
  local child = { log = {} }
  local handle, err = uv.spawn(cmd, { args = args, stdio = { nil, out, err_pipe } }, function(code)
    child.code = code
  end)
  if not handle then
    out:close()
    err_pipe:close()
    fail("cannot start " .. cmd .. ": " .. tostring(err))
  end
  child.handle = handle
  for _, pipe in ipairs({ out, err_pipe }) do
    pipe:read_start(function(_, data) if data then child.log[#child.log + 1] = data else pipe:close() end end)
  end
  children[#children + 1] = child
  return child
end

local function free_port()
  if opts.ports then
    opts.ports = opts.ports + 1
    return opts.ports - 1
  end
  local s = uv.new_tcp()
  s:bind("127.0.0.1", 0)
  local port = s:getsockname().port
  s:close()
  return port
end

local function wait_port(port, child)
  for _ = 1, 200 do
    if child and child.code then return false end
    local c = uv.new_tcp()
    local ok = warren.await(function(resolve) c:connect("127.0.0.1", port, function(e) resolve(not e) end) end, 500)
    c:close()
    if ok then return true end
    warren.sleep(25)
  end
  return false
end

-- ---- the site, the relay and the forwarder ----

local www = tmp .. "/www"
assert(uv.fs_mkdir(www, tonumber("755", 8)))
write_file(www .. "/index.html", "<!doctype html><title>welcome</title><h1>It works</h1>\n")
write_file(www .. "/robots.txt", "User-agent: *\nDisallow:\n")
do
  local parts = {}
  for i = 1, 4096 do parts[i] = string.format("%07d line of a larger file\n", i) end
  write_file(www .. "/large.txt", table.concat(parts))
end

local key = assert(require("warren.keys").generate())
local site_port, relay_port, fwd_port = free_port(), free_port(), free_port()
local site
if opts.site == "warren" then
  site = spawn(WARREN, { "serve", "127.0.0.1:" .. site_port, "-k", require("warren.keys").generate(), "-P", www })
elseif opts.site == "nginx" then
  local nginx = on_path("nginx") or (uv.fs_access("/usr/sbin/nginx", "X") and "/usr/sbin/nginx")
  if not nginx then fail("nginx is not installed") end
  write_file(tmp .. "/nginx.conf", table.concat({
    "daemon off; worker_processes 1; pid " .. tmp .. "/nginx.pid; error_log stderr;",
    "events { worker_connections 1024; }",
    "http { access_log off; include /etc/nginx/mime.types; client_body_temp_path " .. tmp .. ";",
    "  server { listen 127.0.0.1:" .. site_port .. "; root " .. www .. "; } }",
  }, "\n"))
  site = spawn(nginx, { "-c", tmp .. "/nginx.conf", "-p", tmp })
elseif opts.site == "python" then
  -- http.server's listen backlog is 5: at the prober's concurrency the kernel then drops and resets
  -- connections, at moments that differ between the two paths. A real site has a real backlog.
  site = spawn(on_path("python3") or fail("python3 is not installed"), { "-c", table.concat({
    "import functools, http.server as h",
    "h.ThreadingHTTPServer.request_queue_size = 1024",
    "handler = functools.partial(h.SimpleHTTPRequestHandler, directory=" .. string.format("%q", www) .. ")",
    "h.ThreadingHTTPServer(('127.0.0.1', " .. site_port .. "), handler).serve_forever()",
  }, "\n") })
else
  usage("--site warren, nginx or python")
end
if not wait_port(site_port, site) then fail("the site did not start: " .. table.concat(site.log)) end

local relay = spawn(WARREN, { "serve", "127.0.0.1:" .. relay_port, "-k", key, "-P", "http://127.0.0.1:" .. site_port })
if not wait_port(relay_port, relay) then fail("the relay did not start: " .. table.concat(relay.log)) end

-- A forwarder on luv: connects to the site per connection, carries bytes, EOF as a half-close,
-- and a reset as a reset.
local function builtin_forwarder()
  local server = uv.new_tcp()
  assert(server:bind("127.0.0.1", fwd_port))
  server:listen(512, function()
    local down = uv.new_tcp()
    server:accept(down)
    local up = uv.new_tcp()
    local closed = false
    local function close_both(reset)
      if closed then return end
      closed = true
      for _, h in ipairs({ down, up }) do
        if reset and h.close_reset then h:close_reset() else h:close() end
      end
    end
    local eofs = 0
    local function pipe(from, to)
      from:read_start(function(err, data)
        if err then return close_both(true) end
        if data then return to:write(data) end
        eofs = eofs + 1
        to:shutdown(function() if eofs == 2 then close_both(false) end end)
      end)
    end
    up:connect("127.0.0.1", site_port, function(err)
      if err then return close_both(true) end
      pipe(down, up)
      pipe(up, down)
    end)
  end)
  return server
end

local forwarder
if opts.forwarder == "socat" then
  forwarder = spawn(on_path("socat") or fail("socat is not installed"), { "-t", "30",
    "TCP-LISTEN:" .. fwd_port .. ",bind=127.0.0.1,reuseaddr,fork,backlog=512", "TCP:127.0.0.1:" .. site_port })
  if not wait_port(fwd_port, forwarder) then fail("socat did not start: " .. table.concat(forwarder.log)) end
elseif opts.forwarder == "builtin" then
  builtin_forwarder()
else
  usage("--forwarder socat or builtin")
end

-- ---- recording real handshakes ----

-- The first bytes a real client sends to a listener (it never gets an answer).
local function record(client_args)
  local cap = uv.new_tcp()
  assert(cap:bind("127.0.0.1", 0))
  local cap_port = cap:getsockname().port
  local got
  local done = warren.await(function(resolve)
    cap:listen(8, function()
      local peer = uv.new_tcp()
      cap:accept(peer)
      local parts = {}
      peer:read_start(function(_, data)
        if data then parts[#parts + 1] = data end
        -- the whole first flight: the client then waits for an answer that never comes
        warren.spawn(function()
          warren.sleep(300)
          if not got then
            got = table.concat(parts)
            resolve(true)
          end
          if not peer:is_closing() then peer:close() end
        end)
      end)
    end)
    local args = {}
    for i, a in ipairs(client_args) do args[i] = a:gsub("CAPTURE", tostring(cap_port)) end
    local child = spawn(WARREN, args)
    warren.spawn(function()
      -- a client that dials only when someone uses its forward: use it
      warren.sleep(1000)
      local port = tonumber(args[2]:match(":(%d+):"))
      if not got and port then
        local c = uv.new_tcp()
        c:connect("127.0.0.1", port, function() end)
        warren.sleep(3000)
        c:close()
      end
      if not child.handle:is_closing() then child.handle:kill("sigterm") end
    end)
  end, 8000)
  cap:close()
  if not done or not got or #got == 0 then
    fail("could not record a handshake for " .. table.concat(client_args, " "))
  end
  return got
end

local hs_port = free_port()
local handshake = record({ "-L", "127.0.0.1:" .. hs_port .. ":127.0.0.1:9", "127.0.0.1:CAPTURE", "-k", key })
local hello = record({ "-L", "127.0.0.1:" .. free_port() .. ":127.0.0.1:9", "tls://127.0.0.1:CAPTURE", "-k", key,
  "--pin", "sha256:" .. string.rep("00", 32) })

-- ---- probes ----

math.randomseed(opts.seed)
local rand = math.random

local function random_bytes(n)
  local t = {}
  for i = 1, n do t[i] = string.char(rand(0, 255)) end
  return table.concat(t)
end

local function flip_bits(s)
  local b = { s:byte(1, -1) }
  for _ = 1, rand(1, 3) do
    local i = rand(1, #b)
    b[i] = require("bit").bxor(b[i], require("bit").lshift(1, rand(0, 7)))
  end
  local t = {}
  for i = 1, #b do t[i] = string.char(b[i]) end
  return table.concat(t)
end

local METHODS = { "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "PROPFIND",
  "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "SEARCH", "PURGE", "LINK", "UNLINK", "REPORT", "MKACTIVITY",
  "CHECKOUT", "MERGE", "M-SEARCH", "NOTIFY", "SUBSCRIBE", "UNSUBSCRIBE", "ACL", "BIND", "REBIND", "UNBIND",
  "MKCALENDAR", "SOURCE", "PRI", "BREW", "FOO" }
local PATHS = { "/", "/index.html", "/robots.txt", "/large.txt", "/missing", "/a/../index.html", "/%2e%2e/etc/passwd",
  "/?q=1", "*", "http://example.com/", "/.git/config", "/wp-login.php", "//", "/index.html/" }

local function request(method, path, extra, version)
  return string.format("%s %s %s\r\nHost: %s\r\n%s\r\n", method, path, version or "HTTP/1.1",
    rand(2) == 1 and "example.com" or "127.0.0.1", extra or "")
end

local function body_request(method)
  local body = random_bytes(rand(0, 3000))
  if rand(2) == 1 then
    return request(method, PATHS[rand(#PATHS)], "Content-Length: " .. #body .. "\r\n") .. body
  end
  local chunks, rest = {}, body
  while #rest > 0 do
    local n = rand(1, 700)
    chunks[#chunks + 1] = string.format("%x\r\n%s\r\n", math.min(n, #rest), rest:sub(1, n))
    rest = rest:sub(n + 1)
  end
  return request(method, PATHS[rand(#PATHS)], "Transfer-Encoding: chunked\r\n") .. table.concat(chunks) .. "0\r\n\r\n"
end

local MALFORMED = {
  function() return "GET / HTTP/1.1\r\nHost: x\r\nbad header\r\n\r\n" end,
  function() return "GET / HTTP/9.9\r\n\r\n" end,
  function() return "GET /\r\n\r\n" end,
  function() return "GET  / HTTP/1.1\r\n\r\n" end,
  function() return "GET / HTTP/1.1\nHost: x\n\n" end,
  function() return "GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n" end,
  function() return "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" end,
  function() return "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n" end,
  function() return "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd" end,
  function() return "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n" end,
  function() return "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\nabc" end,
  function() return "GET / HTTP/1.1\r\nHost: x\0y\r\n\r\n" end,
  function() return "GET /" .. random_bytes(rand(1, 40)) .. " HTTP/1.1\r\n\r\n" end,
  function() return request("GET", "/", random_bytes(rand(1, 60)) .. "\r\n") end,
  function() return "HTTP/1.1 200 OK\r\n\r\n" end,
  function() return "\r\n\r\nGET / HTTP/1.1\r\n\r\n" end,
  function()
    return "GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n" .. random_bytes(rand(0, 50))
  end,
  function() return "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" .. random_bytes(rand(0, 30)) end,
}

local OVERSIZED = {
  function() return request("GET", "/" .. string.rep("a", rand(8000, 20000))) end,
  function() return request("GET", "/", "X-Big: " .. string.rep("b", rand(10000, 70000)) .. "\r\n") end,
  function()
    local t = {}
    for i = 1, rand(90, 200) do t[i] = "X-H" .. i .. ": v\r\n" end
    return request("GET", "/", table.concat(t))
  end,
  function() return string.rep("GET / HTTP/1.1\r\nHost: x\r\n\r\n", rand(20, 120)) end,
}

-- Each probe: what it sends, in pieces with gaps (a slow sender), and whether it half-closes.
local function make_probe(n)
  local kind = rand(100)
  local text, name
  if kind <= 20 then
    text, name = random_bytes(rand(1, 4096)), "random"
  elseif kind <= 28 then
    text, name = handshake:sub(1, rand(1, #handshake)), "handshake-truncated"
  elseif kind <= 36 then
    text, name = flip_bits(handshake), "handshake-bitflip"
  elseif kind <= 39 then
    text, name = handshake, "handshake-replay"
  elseif kind <= 44 then
    local h = rand(2) == 1 and hello or flip_bits(hello)
    text, name = h:sub(1, rand(1, #h)), "tls-hello"
  elseif kind <= 62 then
    local m = METHODS[rand(#METHODS)]
    local extra = rand(3) == 1 and "Connection: close\r\n" or ""
    text, name = request(m, PATHS[rand(#PATHS)], extra, rand(6) == 1 and "HTTP/1.0" or nil), "method-" .. m
  elseif kind <= 72 then
    text, name = body_request(({ "POST", "PUT", "PATCH", "GET" })[rand(4)]), "body"
    if rand(2) == 1 then text, name = text .. request("GET", "/index.html"), "body-pipelined" end
  elseif kind <= 88 then
    text, name = MALFORMED[rand(#MALFORMED)](), "malformed"
  else
    text, name = OVERSIZED[rand(#OVERSIZED)](), "oversized"
  end
  local probe = { n = n, name = name, pieces = { text }, gap = 0, half_close = rand(3) == 1 }
  if rand(6) == 1 and #text > 1 then -- a slow sender
    probe.name = name .. "+slow"
    probe.pieces = {}
    local cuts = math.min(rand(2, 6), #text)
    local at = 1
    for i = 1, cuts do
      local to = i == cuts and #text or rand(at, #text - (cuts - i))
      probe.pieces[#probe.pieces + 1] = text:sub(at, to)
      at = to + 1
      if at > #text then break end
    end
    probe.gap = rand(20, opts.quick and 120 or 400)
  end
  return probe
end

-- Sends a probe to port; returns the bytes that came back and how the connection ended.
local function run_probe(probe, port)
  local c = uv.new_tcp()
  local ok, err = warren.await(function(resolve)
    c:connect("127.0.0.1", port, function(e) resolve(not e, e) end)
  end, 5000)
  if not ok then
    c:close()
    return "", "connect failed: " .. tostring(err)
  end
  local parts, ending = {}, nil
  local finished
  c:read_start(function(e, data)
    if ending then return end
    if e then
      ending = e == "ECONNRESET" and "reset" or e
    elseif data then
      parts[#parts + 1] = data
      return
    else
      ending = "fin"
    end
    if finished then finished() end
  end)
  for i, piece in ipairs(probe.pieces) do
    if ending then break end
    c:write(piece, function() end)
    if i < #probe.pieces then warren.sleep(probe.gap) end
  end
  if probe.half_close and not ending then c:shutdown(function() end) end
  if not ending then
    warren.await(function(resolve) finished = resolve end, opts.timeout)
  end
  c:close()
  return table.concat(parts), ending or "open"
end

local function normalize(bytes)
  return (bytes:gsub("\r\nDate: [^\r\n]*", "\r\nDate: -"))
end

local function excerpt(s)
  s = s:sub(1, 160):gsub("[^\32-\126]", function(ch) return string.format("\\x%02x", ch:byte()) end)
  return s
end

-- ---- run ----

local t0 = uv.now()
local differences, by_name, shown, done_count = 0, {}, 0, 0
local next_probe = 0
local endings = {} -- through the relay: fin, reset, open
local workers = {}
for w = 1, opts.concurrency do
  workers[w] = warren.spawn(function()
    while next_probe < opts.probes do
      next_probe = next_probe + 1
      local probe = make_probe(next_probe)
      local via_relay, via_fwd = {}, {}
      local a = warren.spawn(function() via_relay.bytes, via_relay.ending = run_probe(probe, relay_port) end)
      local b = warren.spawn(function() via_fwd.bytes, via_fwd.ending = run_probe(probe, fwd_port) end)
      a:join()
      b:join()
      done_count = done_count + 1
      endings[via_relay.ending] = (endings[via_relay.ending] or 0) + 1
      if normalize(via_relay.bytes) ~= normalize(via_fwd.bytes) or via_relay.ending ~= via_fwd.ending then
        differences = differences + 1
        by_name[probe.name] = (by_name[probe.name] or 0) + 1
        if shown < opts.show then
          shown = shown + 1
          io.stdout:write(string.format("difference: probe %d (%s, %d pieces, gap %d ms, half-close %s) sent %s\n" ..
            "  relay:     %s, %d bytes: %s\n  forwarder: %s, %d bytes: %s\n", probe.n, probe.name, #probe.pieces,
            probe.gap, tostring(probe.half_close), excerpt(table.concat(probe.pieces)), via_relay.ending,
            #via_relay.bytes, excerpt(via_relay.bytes), via_fwd.ending, #via_fwd.bytes, excerpt(via_fwd.bytes)))
        end
      end
    end
  end)
end
for _, w in ipairs(workers) do w:join() end

local kinds = {}
for name, count in pairs(by_name) do kinds[#kinds + 1] = name .. ":" .. count end
table.sort(kinds)
io.stdout:write(string.format("probes=%d differences=%d seconds=%.1f seed=%d site=%s forwarder=%s fin=%d reset=%d " ..
  "open=%d handshake=%d hello=%d%s\n", done_count, differences, (uv.now() - t0) / 1000, opts.seed, opts.site,
  opts.forwarder, endings.fin or 0, endings.reset or 0, endings.open or 0, #handshake, #hello,
  #kinds > 0 and (" by_kind=" .. table.concat(kinds, ",")) or ""))
cleanup()
warren.exit(differences == 0 and 0 or 1)
