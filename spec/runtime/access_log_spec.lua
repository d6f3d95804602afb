-- luacheck: std +busted
-- The access log: curl through -L, -D and a -R port of real warren processes, then one record per
-- connection on each side with the bytes the origin really sent and received; JSON lines that a
-- JSON decoder reads; a writer that cannot write (a FIFO nobody reads) costs records, never the
-- loop.
local warren = require("warren")
local core = require("warren.core")
local json = require("dkjson")
local uv = require("luv")
local proc = require("helpers.proc")
local net = require("helpers.net")
local wait = require("helpers.wait")

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  return s
end

local function lines(text)
  local out = {}
  for line in text:gmatch("([^\n]*)\n") do out[#out + 1] = line end
  return out
end

-- One logfmt line into a table: key=bare or key="quoted \" \\ \n \t \xHH".
local function parse_text(line)
  local t, i = {}, 1
  while i <= #line do
    local key, rest = line:match("^([%a_]+)=()", i)
    assert(key, "no key at " .. i .. " in " .. line)
    i = rest
    if line:sub(i, i) == '"' then
      local parts = {}
      i = i + 1
      while true do
        local c = line:sub(i, i)
        assert(c ~= "", "unterminated quote in " .. line)
        if c == '"' then i = i + 1; break end
        if c == "\\" then
          local e = line:sub(i + 1, i + 1)
          if e == "x" then
            parts[#parts + 1] = string.char(tonumber(line:sub(i + 2, i + 3), 16))
            i = i + 4
          else
            parts[#parts + 1] = ({ n = "\n", t = "\t" })[e] or e
            i = i + 2
          end
        else
          parts[#parts + 1] = c
          i = i + 1
        end
      end
      t[key] = table.concat(parts)
    else
      local v, after = line:match("^([^ ]*)()", i)
      t[key] = v
      i = after
    end
    assert(i > #line or line:sub(i, i) == " ", "junk after " .. key .. " in " .. line)
    i = i + 1
  end
  return t
end

local function curl(...)
  local spec = { "curl", "-sS", "-m", "10", "-o", "/dev/null", "-w", "%{http_code}" }
  for _, a in ipairs({ ... }) do spec[#spec + 1] = a end
  return proc.run(spec, 15000)
end

local fields = { "time", "tunnel", "user", "peer", "target", "bytes_up", "bytes_down", "duration_ms", "reason" }

describe("the access log", function()
  local body = string.rep("0123456789", 1234) -- 12340 bytes
  local origin, origin_port, seen
  local answer_bytes = #("HTTP/1.1 200 OK\r\nContent-Length: " .. #body .. "\r\nConnection: close\r\n\r\n") + #body
  local dir
  setup(function()
    origin, origin_port, seen = net.http_server(body)
    dir = assert(uv.fs_mkdtemp(os.tmpname() .. "-access-XXXXXX"))
  end)
  teardown(function()
    origin:close()
    os.execute("rm -rf '" .. dir .. "'")
  end)

  -- The request head the origin received for path (what went up through the tunnel).
  local function head_bytes(path)
    for _, h in ipairs(seen) do
      if h:match("^GET (%S+)") == path then return #h end
    end
    error("the origin saw no request for " .. path)
  end

  it("writes one record per connection on the relay (text) and the client (JSON) for -L, -D and -R", function()
    local k = proc.key()
    local from = net.free_range(1)
    local relay_log, client_log = dir .. "/relay.log", dir .. "/client.log"
    local relay, relay_port = proc.serve({ "-k", k, "--ports", from .. "-" .. from, "--outer-bind", "127.0.0.1",
      "--access-log", relay_log })
    local lport, dport, closed_port = net.free_port(), net.free_port(), net.free_port()
    local client = proc.start({ proc.warren_bin, "-L", lport .. ":127.0.0.1:" .. origin_port, "-D", tostring(dport),
      "-R", from .. ":127.0.0.1:" .. origin_port, "--name", "web", "127.0.0.1:" .. relay_port, "-k", k,
      "--access-log", client_log, "--access-log-format", "json" })
    -- (no probing connection: it would be a record too) -R is opened after -L and -D
    assert(wait.output(client, "web: relay port", 10000), select(2, client:output()))

    assert.equal("200", curl("http://127.0.0.1:" .. lport .. "/via-L").stdout)
    local proxy = "socks5h://127.0.0.1:" .. dport
    assert.equal("200", curl("-x", proxy, "http://127.0.0.1:" .. origin_port .. "/via-D").stdout)
    assert.equal("200", curl("http://127.0.0.1:" .. from .. "/via-R").stdout)
    assert.equal("000", curl("-x", "socks5h://127.0.0.1:" .. dport, "http://127.0.0.1:" .. closed_port .. "/").stdout)

    local client_lines, relay_lines
    assert(wait.eventually(function()
      client_lines, relay_lines = lines(read_file(client_log)), lines(read_file(relay_log))
      return #client_lines >= 4 and #relay_lines >= 4
    end, 10000), "records missing:\n" .. read_file(client_log) .. "\n" .. read_file(relay_log))
    warren.sleep(300) -- nothing more should come
    client_lines, relay_lines = lines(read_file(client_log)), lines(read_file(relay_log))
    assert.equal(4, #client_lines, read_file(client_log))
    assert.equal(4, #relay_lines, read_file(relay_log))

    local records = { client = {}, relay = {} }
    for _, line in ipairs(client_lines) do
      local r, _, err = json.decode(line)
      assert.is_table(r, tostring(err) .. ": " .. line)
      records.client[#records.client + 1] = r
    end
    for _, line in ipairs(relay_lines) do records.relay[#records.relay + 1] = parse_text(line) end
    for side, list in pairs(records) do
      for _, r in ipairs(list) do
        for _, f in ipairs(fields) do assert.is_not_nil(r[f], side .. " record lacks " .. f) end
        assert.matches("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$", r.time)
        -- the relay's user (one key: "default"); a client's own records have none
        assert.equal(side == "relay" and "default" or "-", r.user)
        assert.matches("^127%.0%.0%.1:%d+$", r.peer)
        r.bytes_up, r.bytes_down, r.duration_ms = tonumber(r.bytes_up), tonumber(r.bytes_down), tonumber(r.duration_ms)
        assert.is_true(r.duration_ms >= 0 and r.duration_ms < 10000)
      end
    end
    local function find(side, pred, n)
      local hits = {}
      for _, r in ipairs(records[side]) do if pred(r) then hits[#hits + 1] = r end end
      assert.equal(n or 1, #hits, side .. ": " .. #hits .. " records match")
      return hits[1], hits[2]
    end
    local origin_target = "127.0.0.1:" .. origin_port
    local ok_records = {
      client = {
        find("client", function(r) return r.tunnel == "-L 127.0.0.1:" .. lport end),
        find("client", function(r) return r.tunnel == "-D 127.0.0.1:" .. dport and r.target == origin_target end),
        find("client", function(r) return r.tunnel == "web" end),
      },
      -- the relay cannot tell -L from -D (nor their names): two streams to the origin
      relay = { find("relay", function(r) return r.tunnel == "-" and r.target == origin_target end, 2) },
    }
    ok_records.relay[3] = find("relay", function(r) return r.tunnel == "web" end)
    assert.equal(head_bytes("/via-L"), head_bytes("/via-D")) -- so the order of those two is no matter
    local paths = { "/via-L", "/via-D", "/via-R" }
    for side, list in pairs(ok_records) do
      for i, r in ipairs(list) do
        local what = side .. " " .. paths[i]
        assert.equal("eof", r.reason, what)
        assert.equal(head_bytes(paths[i]), r.bytes_up, what)
        assert.equal(answer_bytes, r.bytes_down, what)
      end
    end
    assert.equal(origin_target, ok_records.client[3].target) -- the client dials the inner service
    assert.matches("^@svc/%d+$", ok_records.relay[3].target) -- the relay sends to the service's client
    -- the client's -R record names the user the relay saw
    assert.equal(ok_records.relay[3].peer, ok_records.client[3].peer)
    local refused = find("client", function(r) return r.target == "127.0.0.1:" .. closed_port end)
    assert.same({ "refused", 0, 0 }, { refused.reason, refused.bytes_up, refused.bytes_down })
    refused = find("relay", function(r) return r.target == "127.0.0.1:" .. closed_port end)
    assert.same({ "refused", 0, 0 }, { refused.reason, refused.bytes_up, refused.bytes_down })

    client:kill(); relay:kill()
    client:wait(5000); relay:wait(5000)
  end)

  it("takes access_log = {...} in a script, and escapes names in both formats", function()
    local k = proc.key()
    local relay, relay_port = proc.serve({ "-k", k })
    local logs = { text = dir .. "/script.log", json = dir .. "/script.jsonl" }
    local name = 'odd "name"\twith = signs'
    for format, path in pairs(logs) do
      local lport = net.free_port()
      local script = dir .. "/tunnels-" .. format .. ".lua"
      local f = assert(io.open(script, "w"))
      f:write(string.format("return { server = %q, key = %q, access_log = { path = %q, format = %q },\n"
        .. "  tunnels = { [%q] = { L = %q } } }\n", "127.0.0.1:" .. relay_port, k, path, format, name,
        lport .. ":127.0.0.1:" .. origin_port))
      f:close()
      local client = proc.start({ proc.warren_bin, "run", script })
      assert(wait.eventually(function() return select(2, client:output()):find("forwarding", 1, true) end, 10000),
        select(2, client:output()))
      assert.equal("200", curl("http://127.0.0.1:" .. lport .. "/script").stdout)
      assert(wait.eventually(function() return #lines(read_file(path)) == 1 end, 10000), read_file(path))
      local line = lines(read_file(path))[1]
      local r = format == "json" and json.decode(line) or parse_text(line)
      assert.equal(name, r.tunnel, line)
      assert.equal(answer_bytes, tonumber(r.bytes_down))
      client:kill()
      client:wait(5000)
    end
    relay:kill()
    relay:wait(5000)
  end)

  it("says `session` when the relay dies under a connection", function()
    local echo, echo_port = net.echo_server()
    local k, lport, log_path = proc.key(), net.free_port(), dir .. "/session.log"
    local relay, relay_port = proc.serve({ "-k", k })
    local client = proc.start({ proc.warren_bin, "-L", lport .. ":127.0.0.1:" .. echo_port, "127.0.0.1:" .. relay_port,
      "-k", k, "--access-log", log_path })
    assert(wait.eventually(function() return select(2, client:output()):find("forwarding", 1, true) end, 10000))
    local conn = uv.new_tcp()
    local got = warren.await(function(resolve)
      conn:connect("127.0.0.1", lport, function(err)
        if err then return resolve(nil) end
        conn:read_start(function(_, data) if data then resolve(data) end end)
        conn:write("hi")
      end)
    end, 5000)
    assert.equal("hi", got)
    relay:kill("sigkill")
    relay:wait(5000)
    assert(wait.eventually(function() return #lines(read_file(log_path)) == 1 end, 10000), read_file(log_path))
    local r = parse_text(lines(read_file(log_path))[1])
    assert.same({ "session", "2", "2" }, { r.reason, r.bytes_up, r.bytes_down })
    conn:close()
    client:kill()
    client:wait(5000)
    echo:close()
  end)

  it("refuses a bad format or path clearly", function()
    local r = proc.warren({ "--access-log", dir .. "/x.log", "--access-log-format", "xml", "keygen" })
    assert.equal(2, r.code)
    assert.matches("access%-log%-format takes text or json", r.stderr)
    r = proc.warren({ "--access-log", dir .. "/no/such/dir/x.log", "keygen" })
    assert.equal(1, r.code)
    assert.matches("access%-log .*no such file", r.stderr)
    assert.has_error(function() core.access_log({ path = "-", format = "csv" }) end)
  end)

  describe("in this process", function()
    local tunnel = require("warren.tunnel")
    local relay, client, fwd
    setup(function()
      local k = proc.key()
      relay = assert(tunnel.relay({ listen = "127.0.0.1:0", key = k }))
      client = assert(tunnel.client({ server = "127.0.0.1:" .. relay:port(), key = k }))
      assert(client:connect())
      fwd = assert(client:forward({ listen = "127.0.0.1:0", target = "127.0.0.1:" .. origin_port, name = "fifo" }))
    end)
    teardown(function()
      core.access_log(false)
      client:close()
      relay:close()
    end)

    -- n requests through the forward, 50 at a time; how many got the whole answer.
    local function fetch_all(n)
      local ok_count = 0
      for batch = 0, n - 1, 50 do
        local tasks = {}
        for i = 1, math.min(50, n - batch) do
          tasks[i] = warren.spawn(function()
            return net.exchange(fwd:port(), "GET /" .. i .. " HTTP/1.1\r\nHost: x\r\n\r\n", { want = answer_bytes })
          end)
        end
        for i = 1, #tasks do
          local ok, reply = tasks[i]:join(20000)
          if ok and reply and #reply == answer_bytes then ok_count = ok_count + 1 end
        end
      end
      return ok_count
    end

    it("drops and counts records, and never stalls the tunnels, when the writer is stuck", function()
      local fifo = dir .. "/stuck.fifo"
      local rc = os.execute("mkfifo '" .. fifo .. "'")
      assert.is_true(rc == 0 or rc == true)
      -- a reader that never reads (opened O_RDONLY | O_NONBLOCK, 2048 on Linux, so that the open
      -- does not wait for a writer): the pipe fills, then the thread-pool write blocks
      local reader = assert(uv.fs_open(fifo, 2048, 0))
      assert(core.access_log({ path = fifo, format = "json", buffer = 4096 }))
      local t0 = uv.now()
      local n = 600 -- ~200 bytes each: far more than the pipe (64 KiB) and the buffer hold
      assert.equal(n, fetch_all(n))
      assert.is_true(uv.now() - t0 < 15000)
      local st
      assert(wait.eventually(function()
        st = core.access_log_stats()
        return st.records + st.dropped == 2 * n -- each connection ends twice: client and relay
      end, 10000), "records " .. tostring(st and st.records) .. " dropped " .. tostring(st and st.dropped))
      assert.is_true(st.dropped > 0, "nothing was dropped")
      -- a reader drains the pipe: what was kept arrives, whole lines of JSON
      local cat = proc.start({ "cat", fifo })
      core.access_log(false)
      -- everything kept reaches the reader once it reads
      assert(wait.eventually(function() return #lines((cat:output())) == st.records end, 10000),
        #lines((cat:output())) .. " lines of " .. st.records)
      cat:kill()
      uv.fs_close(reader) -- only now: a FIFO without readers fails the writes
      local got = lines(cat:wait(5000).stdout)
      for _, line in ipairs(got) do assert.is_table(json.decode(line), line) end
    end)
  end)
end)
