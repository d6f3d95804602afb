-- luacheck: std +busted
-- -P URL: a relay whose fallback site is a real web server it passes the bytes to. A web server
-- here (on the spec's loop) answers each request with the body it got; curl and plain sockets
-- check bodies both ways (SHA-256), chunked uploads, keep-alive, pipelining, Connection: close, a
-- site that is down, and that clients still come in over TLS on the same port.
local warren = require("warren")
local proc = require("helpers.proc")
local net = require("helpers.net")
local wait = require("helpers.wait")

-- The body of a request whose head is `head` from buf at `at`, or nil while incomplete; also the
-- position after it.
local function body_of(head, buf, at)
  local len = head:lower():match("\r\ncontent%-length: *(%d+)")
  if len then
    len = tonumber(len)
    if #buf - at + 1 < len then return nil end
    return buf:sub(at, at + len - 1), at + len
  end
  if not head:lower():find("\r\ntransfer%-encoding: *chunked") then return "", at end
  local parts = {}
  while true do
    local line_end = buf:find("\r\n", at, true)
    if not line_end then return nil end
    local size = tonumber(buf:sub(at, line_end - 1):match("^%x+"), 16)
    if size == 0 then
      local done = buf:find("\r\n\r\n", line_end, true)
      if not done then return nil end
      return table.concat(parts), done + 4
    end
    if #buf < line_end + 1 + size + 2 then return nil end
    parts[#parts + 1] = buf:sub(line_end + 2, line_end + 1 + size)
    at = line_end + 2 + size + 2
  end
end

-- An HTTP/1.1 server that answers every request with the body it carried (or "METHOD PATH" when
-- it had none), keeps connections open unless asked not to, and counts connections and requests.
local function web_server()
  local stats = { connections = 0, requests = 0 }
  local server, port = net.serve(function(peer)
    stats.connections = stats.connections + 1
    local parts, buf = {}, ""
    peer:read_start(function(_, data)
      if not data then return peer:close() end
      parts[#parts + 1] = data
      buf = table.concat(parts)
      parts = { buf }
      while true do
        local head_end = buf:find("\r\n\r\n", 1, true)
        if not head_end then return end
        local head = buf:sub(1, head_end + 3)
        local body, after = body_of(head, buf, head_end + 4)
        if not body then return end
        buf = buf:sub(after)
        parts = { buf }
        stats.requests = stats.requests + 1
        if body == "" then body = head:match("^(%S+ %S+)") end
        local close = head:lower():find("\r\nconnection: *close") ~= nil
        peer:write("HTTP/1.1 200 OK\r\nContent-Length: " .. #body .. (close and "\r\nConnection: close" or "") ..
          "\r\n\r\n" .. body)
        if close then
          peer:read_stop()
          return peer:shutdown(function() peer:close() end)
        end
      end
    end)
  end)
  return server, port, stats
end

local function curl(...)
  return proc.run({ "curl", "-sS", "-m", "20", ... }, 30000)
end

local function sha256(path)
  return proc.run({ "sha256sum", path }).stdout:match("^%x+")
end

local function random_file(size)
  local path = os.tmpname()
  proc.run({ "sh", "-c", "head -c " .. size .. " /dev/urandom > " .. path })
  return path
end

describe("a relay with -P URL", function()
  local site, site_port, stats, relay, port, k, store
  before_each(function()
    site, site_port, stats = web_server()
    store = os.tmpname()
    os.remove(store) -- made at first start
    k = proc.key()
    relay, port = proc.serve({ "-k", k, "--tls", "--self-signed", store, "-P", "http://127.0.0.1:" .. site_port })
  end)
  after_each(function()
    relay:kill()
    relay:wait(5000)
    site:close()
    os.remove(store)
  end)

  it("passes large bodies both ways untouched, plain and chunked", function()
    local upload, answer = random_file(5 * 1024 * 1024 + 17), os.tmpname()
    local url = "http://127.0.0.1:" .. port .. "/upload"
    local r = curl("--data-binary", "@" .. upload, "-o", answer, url)
    assert.equal(0, r.code, r.stderr)
    assert.equal(sha256(upload), sha256(answer))
    r = curl("-H", "Transfer-Encoding: chunked", "--data-binary", "@" .. upload, "-o", answer, url)
    assert.equal(0, r.code, r.stderr)
    assert.equal(sha256(upload), sha256(answer))
    -- the same through TLS on the same port, where the relay passes what came inside TLS
    r = curl("-k", "-X", "PUT", "--data-binary", "@" .. upload, "-o", answer, "https://127.0.0.1:" .. port .. "/x")
    assert.equal(0, r.code, r.stderr)
    assert.equal(sha256(upload), sha256(answer))
    os.remove(upload)
    os.remove(answer)
  end)

  it("keeps connections alive, passes pipelined requests, and ends on Connection: close", function()
    local r = curl("-v", "http://127.0.0.1:" .. port .. "/one", "http://127.0.0.1:" .. port .. "/two")
    assert.equal("GET /oneGET /two", r.stdout)
    assert.matches("Re%-using existing connection", r.stderr)
    assert.equal(1, stats.connections)
    local pipelined = "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello" ..
      "POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n" ..
      "GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    local reply = net.exchange(port, pipelined, { timeout = 5000 })
    assert.equal("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello" ..
      "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc" ..
      "HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nGET /c", reply)
    assert.equal(5, stats.requests)
  end)

  it("passes bytes that are not HTTP to the site, and takes clients over TLS", function()
    -- a site that sends back whatever it gets
    site:close()
    relay:kill()
    relay:wait(5000)
    local echo_site, echo_site_port = net.echo_server()
    relay, port = proc.serve({ "-k", k, "--tls", "--self-signed", store, "-P", "http://127.0.0.1:" .. echo_site_port })
    local fp = wait.eventually(function() return select(2, relay:output()):match("certificate (sha256:%x+)") end, 5000)
    local garbage = "\0\1\2\255 not http\r\n\r\n"
    assert.equal(garbage, net.exchange(port, garbage, { want = #garbage, timeout = 5000 }))
    -- bytes that could still become HTTP, then the visitor's FIN: passed on, and the site's FIN
    -- back (the site could not be told of the FIN before, and the relay reset such a visitor)
    for _, cut in ipairs({ "G", "GE", "P", "\22\3" }) do
      assert.equal(cut, net.exchange(port, cut, { half_close = true, timeout = 5000 }))
    end
    -- a raw client's handshake is only bytes for the site, which sends them back: no session
    local raw = assert(warren.client({ server = "127.0.0.1:" .. port, key = k }))
    assert.is_nil((raw:connect()))
    local echo, echo_port = net.echo_server()
    local client = assert(warren.client({ server = "tls://127.0.0.1:" .. port, key = k, pin = fp }))
    assert(client:connect())
    local fwd = assert(client:forward({ listen = "127.0.0.1:0", target = "127.0.0.1:" .. echo_port }))
    assert.equal("through tls", net.exchange(fwd:port(), "through tls", { want = 11, timeout = 5000 }))
    client:close()
    echo:close()
    site = echo_site
  end)

  it("closes the connection as a plain forwarder does when the site is down", function()
    relay:kill()
    relay:wait(5000)
    local dead = net.free_port()
    relay, port = proc.serve({ "-k", k, "-P", "http://127.0.0.1:" .. dead })
    local reply, err = net.exchange(port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", { timeout = 5000 })
    -- the visitor's bytes were never read by any site: a reset, and no made-up 502 page
    assert.is_nil(reply)
    assert.equal("ECONNRESET", err)
    local r = curl("http://127.0.0.1:" .. port .. "/")
    assert.equal("", r.stdout)
    assert.is_truthy(r.code == 52 or r.code == 56, "curl exit " .. r.code)
  end)
end)

describe("warren.relay{fallback = URL}", function()
  it("counts the requests passed to the site and the times it could not be reached", function()
    local site, site_port = web_server()
    local key = require("warren.keys").generate()
    local relay = assert(warren.relay({ listen = "127.0.0.1:0", key = key,
      fallback = "http://127.0.0.1:" .. site_port }))
    local reply = net.exchange(relay:port(), "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n" ..
      "Connection: close\r\n\r\n", { timeout = 5000 })
    assert.matches("GET /a.*GET /b$", reply)
    assert.equal(2, relay:stats().site_requests)
    site:close()
    assert.is_nil(net.exchange(relay:port(), "GET /c HTTP/1.1\r\nHost: x\r\n\r\n", { timeout = 5000 }))
    assert.equal(1, relay:stats().site_dial_failed)
    relay:close()
  end)
end)

describe("-P URL on the command line", function()
  it("must be http://HOST:PORT with an optional plain path", function()
    for _, bad in ipairs({ "http://127.0.0.1:80/a?b", "http://127.0.0.1:80/a b", "https://127.0.0.1:443" }) do
      local r = proc.warren({ "serve", "127.0.0.1:" .. net.free_port(), "-k", proc.key(), "-P", bad })
      assert.equal(2, r.code, bad)
      assert.matches("%-P URL must be http://HOST:PORT", r.stderr)
    end
  end)
end)

describe("the README's -P URL command", function()
  it("runs as written, with this machine's ports", function()
    local f = assert(io.open(proc.source_dir .. "/README.md"))
    local readme = f:read("*a")
    f:close()
    local line = readme:match("\n(warren serve [^\n]*%-P http://[^\n]*)")
    assert.is_truthy(line, "no `warren serve ... -P http://...` line in README.md")
    local cmd = line:gsub("%s+#.*$", "")
    local site, site_port = web_server()
    local port = net.free_port()
    local key_file = os.tmpname()
    local kf = assert(io.open(key_file, "w"))
    kf:write(proc.key(), "\n")
    kf:close()
    local args = {}
    for word in cmd:gmatch("%S+") do
      word = word:gsub("^0%.0%.0%.0:%d+$", "127.0.0.1:" .. port):gsub("^http://127%.0%.0%.1:%d+",
        "http://127.0.0.1:" .. site_port):gsub("^relay%.key$", key_file)
      args[#args + 1] = word
    end
    assert.equal("warren", table.remove(args, 1))
    table.insert(args, 1, proc.warren_bin)
    local store = os.tmpname()
    os.remove(store)
    if cmd:find("--tls", 1, true) and not cmd:find("--cert", 1, true) then
      args[#args + 1] = "--self-signed" -- not in the reader's home
      args[#args + 1] = store
    end
    local relay = proc.start(args)
    assert(net.wait_port(port), "the README's relay did not start: " .. select(2, relay:output()))
    assert.equal("GET /from-the-readme", curl("http://127.0.0.1:" .. port .. "/from-the-readme").stdout)
    relay:kill()
    relay:wait(5000)
    site:close()
    os.remove(key_file)
    os.remove(store)
  end)
end)
