-- luacheck: std +busted
-- The KCP carrier (-K, kcp://): integrity of -L, -D and -R over it, silence towards datagrams
-- that do not start a session (random, replayed, altered), answers no larger than the question
-- before the handshake, and a session that survives its client's address changing. The relay runs
-- in this process (warren.relay{kcp = true}) so its counters can be read; a UDP forwarder written
-- here stands between the client and the relay to record, replay and rebind.
local warren = require("warren")
local uv = require("luv")
local bit = require("bit")
local proc = require("helpers.proc")
local net = require("helpers.net")
local wait = require("helpers.wait")
local children = require("helpers.children")

local integrity_runs = require("helpers.integrity")
local integrity_js = integrity_runs.js
local streams = integrity_runs.streams

local kids = children.new()
teardown(kids.stop_all)
local spawn, start = kids.spawn, kids.start
local stop, stderr_of = children.stop, children.stderr_of

local function integrity_server()
  return kids.port_server({ "node", integrity_js, "server" }, "the integrity server")
end

local function integrity(runs)
  integrity_runs.run(spawn, runs)
end

-- A UDP forwarder: the client sends to its port, it sends on to the relay from a socket of its
-- own and passes the answers back. It records every datagram each way (in order), and rebind()
-- moves it to a new source port, as a NAT that forgot the mapping would.
local function forwarder(relay_port)
  local f = { log = {}, from_client = {}, up_bytes = 0, down_bytes = 0 }
  local front = uv.new_udp()
  assert(front:bind("127.0.0.1", 0))
  local client
  local function upstream()
    local up = uv.new_udp()
    assert(up:bind("127.0.0.1", 0))
    up:recv_start(function(err, data)
      if err or not data or not client then return end
      f.down_bytes = f.down_bytes + #data
      f.log[#f.log + 1] = { dir = "down", len = #data, up_bytes = f.up_bytes }
      front:send(data, client.ip, client.port)
    end)
    return up
  end
  f.up = upstream()
  front:recv_start(function(err, data, addr)
    if err or not data then return end
    client = addr
    f.up_bytes = f.up_bytes + #data
    f.log[#f.log + 1] = { dir = "up", len = #data }
    if #f.from_client < 4 then f.from_client[#f.from_client + 1] = data end
    f.up:send(data, "127.0.0.1", relay_port)
  end)
  f.port = front:getsockname().port
  function f.rebind()
    local old = f.up
    f.up = upstream()
    old:close()
  end
  function f.close()
    f.up:close()
    front:close()
  end
  return f
end

-- Sends each datagram from a fresh socket and reports whether anything came back in 600 ms.
local function answered(port, datagrams)
  local s = uv.new_udp()
  assert(s:bind("127.0.0.1", 0))
  local got = false
  s:recv_start(function(_, data) if data then got = true end end)
  for _, d in ipairs(datagrams) do s:send(d, "127.0.0.1", port) end
  warren.sleep(600)
  s:close()
  return got
end

local function random_bytes(n)
  local t = {}
  for i = 1, n do t[i] = string.char(math.random(0, 255)) end
  return table.concat(t)
end

local function le32(n)
  return string.char(bit.band(n, 255), bit.band(bit.rshift(n, 8), 255), bit.band(bit.rshift(n, 16), 255),
    bit.band(bit.rshift(n, 24), 255))
end

describe("the KCP carrier", function()
  local k, relay, relay_port, pool, server, server_port
  setup(function()
    k = proc.key()
    pool = net.free_range(2)
    for _ = 1, 5 do
      relay = warren.relay({ listen = "127.0.0.1:" .. net.free_port(), key = k, kcp = true,
        ports = { pool .. "-" .. pool + 1 }, outer_bind = "127.0.0.1", max_users_per_address = 0 })
      if relay then break end
    end
    assert(relay, "no relay with a free UDP port")
    relay_port = relay:port()
    server, server_port = integrity_server()
  end)
  teardown(function()
    relay:close()
    stop(server)
  end)

  local forms = {
    { name = "-K HOST:PORT (goflyway's -K)", server = function() return { "-K", "127.0.0.1:" .. relay_port } end,
      outer = 0 },
    { name = "kcp://HOST:PORT", server = function() return { "kcp://127.0.0.1:" .. relay_port } end, outer = 1 },
  }
  for _, form in ipairs(forms) do
    it("carries -L, -D and -R over " .. form.name .. ", " .. streams .. " streams each, SHA-256 both ways",
      function()
      local sessions = relay:stats().kcp_sessions
      local lport, dport, outer = net.free_port(), net.free_port(), pool + form.outer
      local args = { "-L", lport .. ":127.0.0.1:" .. server_port, "-D", tostring(dport),
        "-R", outer .. ":127.0.0.1:" .. server_port, "--name", "integrity", "-k", k }
      for _, a in ipairs(form.server()) do args[#args + 1] = a end
      local client = start(args)
      assert(net.wait_port(lport) and net.wait_port(dport), stderr_of(client))
      assert(wait.output(client, "relay port " .. outer, 10000), stderr_of(client))
      local target = "127.0.0.1:" .. server_port
      integrity({
        { label = "-L", target = "127.0.0.1:" .. lport },
        { label = "-D SOCKS5", target = target, via = { "socks5", "127.0.0.1:" .. dport } },
        { label = "-R", target = "127.0.0.1:" .. outer },
        { label = "-L, large streams", target = "127.0.0.1:" .. lport, streams = 4, max = 16 * 1024 * 1024 },
      })
      local st = relay:stats()
      assert.equal(sessions + 1, st.kcp_sessions) -- one session, and over KCP
      assert.is_true(st.kcp_segments_received > 1000)
      assert.is_true(st.kcp_rtt_ms >= 0 and st.kcp_cwnd >= 1)
      local c = stop(client)
      assert.equal(0, c.code, c.stderr)
      assert(wait.eventually(function() return relay:stats().kcp_conversations == 0 end, 10000),
        "the relay kept the conversation after the session ended")
    end)
  end

  it("answers nothing that does not start a session: random, replayed or altered first datagrams", function()
    local fwd = forwarder(relay_port)
    local lport = net.free_port()
    local before = relay:stats()
    local client = start({ "-K", "-L", lport .. ":127.0.0.1:" .. server_port, "127.0.0.1:" .. fwd.port, "-k", k })
    assert(net.wait_port(lport), stderr_of(client))
    integrity({ { label = "through the forwarder", target = "127.0.0.1:" .. lport, streams = 5 } })
    local first = fwd.from_client[1]
    -- The first datagram is one PUSH segment, sn 0, holding all of msg1.
    assert.equal(81, first:byte(5))
    assert.equal(le32(0), first:sub(13, 16))
    assert.equal(#first - 24, first:byte(21) + 256 * first:byte(22))
    -- Before the client sent anything past msg1, the relay sent no more bytes than it received.
    for _, e in ipairs(fwd.log) do
      if e.dir == "up" and e ~= fwd.log[1] then break end
      if e.dir == "down" then assert.is_true(fwd.log[1].len >= e.len, "amplified: " .. e.len) end
    end
    local refused = relay:stats().kcp_refused
    local altered = {}
    for _, pos in ipairs({ 30, 60, 100, #first }) do -- salt, hidden key, header, padding
      altered[#altered + 1] = first:sub(1, pos - 1) .. string.char(bit.bxor(first:byte(pos), 1)) .. first:sub(pos + 1)
    end
    local other_conv = le32(0x5eed) .. first:sub(5) -- the same msg1 in another conversation
    assert.is_false(answered(relay_port, { first }), "a replayed first datagram was answered")
    assert.is_false(answered(relay_port, { other_conv }), "a replayed msg1 under another conversation was answered")
    assert.is_false(answered(relay_port, altered), "an altered first datagram was answered")
    assert.is_false(answered(relay_port, { random_bytes(1200), random_bytes(24), random_bytes(3) }),
      "random datagrams were answered")
    -- A well-formed PUSH, sn 0, with random bytes where msg1 should be.
    local fake = le32(0x1234) .. string.char(81, 0, 0, 1) .. le32(0) .. le32(0) .. le32(0) .. le32(300) ..
      random_bytes(300)
    assert.is_false(answered(relay_port, { fake }), "a forged PUSH was answered")
    local st = relay:stats()
    assert.is_true(st.kcp_refused >= refused + 9, "refused " .. st.kcp_refused - refused)
    assert.equal(before.kcp_sessions + 1, st.kcp_sessions)
    local c = stop(client)
    assert.equal(0, c.code, c.stderr)
    fwd.close()
  end)

  it("keeps the session when the client's address changes mid-transfer (NAT rebinding)", function()
    local fwd = forwarder(relay_port)
    local lport = net.free_port()
    local rebinds = relay:stats().kcp_rebinds
    local client = start({ "-K", "-L", lport .. ":127.0.0.1:" .. server_port, "127.0.0.1:" .. fwd.port, "-k", k,
      "-v" })
    assert(net.wait_port(lport), stderr_of(client))
    local run = spawn({ "node", integrity_js, "client", "127.0.0.1:" .. lport, "20", tostring(2 * 1024 * 1024) })
    for _ = 1, 3 do
      assert(wait.eventually(function() return fwd.down_bytes > 0 end, 5000))
      local seen = fwd.up_bytes
      assert(wait.eventually(function() return fwd.up_bytes > seen + 200000 end, 20000), "the transfer stalled")
      fwd.rebind()
    end
    local r = run:wait(70000)
    assert(r, "the integrity client did not finish")
    assert.equal(0, r.code, r.stdout .. r.stderr)
    assert.matches("^ok 20 streams", r.stdout)
    assert.is_true(relay:stats().kcp_rebinds >= rebinds + 3)
    local c = stop(client)
    assert.equal(0, c.code, c.stderr)
    assert.not_matches("reconnected", c.stderr) -- the same session throughout
    fwd.close()
  end)

  -- A connected in-process client in KCP mode `mode` (nil: the default) and its session's stats
  -- once KCP has an RTT sample.
  local function client_with_rtt(mode)
    local client = assert(warren.client({ server = "kcp://127.0.0.1:" .. relay_port, key = k, kcp_mode = mode }))
    assert(client:connect())
    local st
    assert(wait.eventually(function()
      st = client.session:stats()
      return st.kcp_segments_received > 0 and st.kcp_rtt_ms > 0
    end, 5000), "no KCP counters with an RTT sample in the session's stats")
    return client, st
  end

  it("shows the conversation's counters in the client session's stats", function()
    local client, st = client_with_rtt("fast3")
    assert.is_true(st.kcp_segments_sent >= 1)
    assert.equal(1024, st.kcp_snd_wnd)
    assert.is_true(st.kcp_lost_segments >= 0 and st.kcp_retransmits >= st.kcp_lost_segments)
    client:close()
  end)

  -- fast2 is the default because a lost lone segment waits for the minimum retransmission timeout:
  -- 30 ms there (nodelay), 100 ms in fast and normal. On loopback the RTO settles at that minimum.
  it("runs fast2 unless told otherwise: a 30 ms minimum RTO, not fast's 100 ms", function()
    local function settled_rto(mode)
      local client, st = client_with_rtt(mode)
      client:close()
      return st.kcp_rto_ms
    end
    -- bounds, not the exact 30: a loaded machine's jitter adds to the RTO above its minimum
    local default_rto, fast_rto = settled_rto(nil), settled_rto("fast")
    assert.is_true(default_rto >= 30 and default_rto < 100, "default mode's RTO: " .. default_rto)
    assert.is_true(fast_rto >= 100, "fast mode's RTO: " .. fast_rto)
  end)

  it("shows the KCP counters in warren status, on the client and (summed) on the relay", function()
    local dir = assert(uv.fs_mkdtemp("/tmp/wr-kcp-status-XXXXXX"))
    local sock = dir .. "/c.sock"
    finally(function()
      os.remove(sock)
      uv.fs_rmdir(dir)
    end)
    local lport = net.free_port()
    local client = start({ "-K", "-L", lport .. ":127.0.0.1:" .. server_port, "127.0.0.1:" .. relay_port, "-k", k,
      "--control", sock })
    assert(net.wait_port(lport), stderr_of(client))
    integrity({ { label = "-L", target = "127.0.0.1:" .. lport, streams = 4, max = 1024 * 1024 } })
    local r
    assert(wait.eventually(function()
      r = proc.warren({ "status", "--control", sock })
      return r.code == 0 and r.stdout:find("over KCP: rtt %d+ ms") ~= nil
    end, 5000), r and r.stdout .. r.stderr)
    assert.matches("window 1024/1024", r.stdout)
    assert.matches("retransmits %d+ %(fast %d+%), lost %d+", r.stdout)
    -- The relay's line sums its conversations; a live, busy one is paced.
    local st = relay:stats()
    assert.is_true(st.kcp_pacing_rate > 0)
    local text = require("warren.control").format_status({ relay = st, services = {} })
    assert.matches("KCP: conversations %d+ %(%d+ in all%), rtt %d+ ms", text)
    assert.matches("pace [%d.]+ MiB/s", text)
    stop(client)
  end)

  it("frees the conversation of a client that vanished, once the session's keepalive gives up", function()
    local quick
    for _ = 1, 5 do
      quick = warren.relay({ listen = "127.0.0.1:" .. net.free_port(), key = k, kcp = true, keepalive = 1 })
      if quick then break end
    end
    assert(quick, "no relay with a free UDP port")
    local lport = net.free_port()
    local client = start({ "-K", "-L", lport .. ":127.0.0.1:" .. server_port, "127.0.0.1:" .. quick:port(), "-k", k })
    assert(net.wait_port(lport), stderr_of(client))
    integrity({ { label = "before", target = "127.0.0.1:" .. lport, streams = 3 } })
    assert.equal(1, quick:stats().kcp_conversations)
    client:kill("sigkill")
    client:wait(5000)
    assert(wait.eventually(function() return quick:stats().kcp_conversations == 0 end, 15000),
      "the conversation outlived its session")
    assert.equal(0, quick:stats().sessions_active)
    quick:close()
  end)

  -- The long comparison is a command of its own (spec/bench/kcp_link.sh); this runs a short form.
  it("crosses a link with delay and loss between two network namespaces (spec/bench/kcp_link.sh --short)",
    function()
    if proc.run({ "id", "-u" }).stdout ~= "0\n" then
      pending("needs root: network namespaces and TUN devices (run spec/bench/kcp_link.sh as root)")
      return
    elseif not uv.fs_stat("/dev/net/tun") then
      pending("needs /dev/net/tun")
      return
    end
    local r = proc.run({ "bash", proc.source_dir .. "/spec/bench/kcp_link.sh", "--short",
      env = { WARREN = proc.warren_bin, CARRIERS = "tcp-bbr kcp-fast" } }, 120000)
    assert.equal(0, r.code, r.stdout .. r.stderr)
    for _, name in ipairs({ "tcp%-bbr", "kcp%-fast" }) do
      local mibs, p99 = r.stdout:match("\n" .. name .. "%s+([%d.]+)%s+[%d.]+%s+[%d.]+%s+([%d.]+)")
      assert(tonumber(mibs) and tonumber(mibs) > 0.5 and tonumber(p99), name .. ": " .. r.stdout .. r.stderr)
    end
  end)

  -- wr_lossy_link (spec/bench) joins two TUN devices in two network namespaces with real delay,
  -- loss, reordering and duplication; the client side runs in one, the relay in the other.
  it("keeps -L, -D and -R byte-exact across a link with delay, loss, reordering and duplication",
    function()
    local link_bin = (os.getenv("WR_LOADGEN") or ""):gsub("wr_loadgen$", "wr_lossy_link")
    if proc.run({ "id", "-u" }).stdout ~= "0\n" then
      pending("needs root: network namespaces and TUN devices (CI runs it as root)")
      return
    elseif not uv.fs_stat("/dev/net/tun") then
      pending("needs /dev/net/tun")
      return
    elseif not uv.fs_stat(link_bin) then
      pending("wr_lossy_link is not built (spec/bench)")
      return
    end
    local netns = proc.source_dir .. "/spec/bench/kcp_netns.sh"
    local a, b = "wr-kcpi-a-" .. uv.os_getpid(), "wr-kcpi-b-" .. uv.os_getpid()
    local up = proc.run({ "bash", netns, "up", a, b }, 20000)
    local link
    -- (one finally per test: busted keeps only the last one given)
    finally(function()
      if link then stop(link) end
      proc.run({ "bash", netns, "down", a, b }, 20000)
    end)
    assert.equal(0, up.code, up.stderr)
    local function spawn_in(ns, spec)
      local full = { "ip", "netns", "exec", ns }
      for _, v in ipairs(spec) do full[#full + 1] = v end
      return spawn(full)
    end
    -- 5 ms each way, 2% lost, 2% held back 3 ms (overtaken), 2% sent twice; a fixed seed.
    link = spawn({ link_bin, "--ns-a", a, "--dev-a", "wrl0", "--ns-b", b, "--dev-b", "wrl0",
      "--delay", "5", "--loss", "2", "--reorder", "2", "--reorder-delay", "3", "--dup", "2",
      "--seed", "13" })
    assert(wait.output(link, "link ready", 5000), stderr_of(link))
    local function server_in(ns)
      local srv = spawn_in(ns, { "node", integrity_js, "server" })
      local port = wait.eventually(function() return srv:output():match("port (%d+)") end, 10000)
      assert(port, "integrity server did not start: " .. stderr_of(srv))
      return port
    end
    local port_b, port_a = server_in(b), server_in(a)
    local relay_b = spawn_in(b, { proc.warren_bin, "serve", "10.201.0.2:8100", "-K", "--ports", "9100-9100",
      "--max-users-per-address", "0",
      "-k", k })
    -- A first datagram sent before the relay binds draws an ICMP refusal, which ends the client.
    assert(wait.eventually(function() return stderr_of(relay_b):find("relay listening", 1, true) end, 15000),
      stderr_of(relay_b))
    local client = spawn_in(a, { proc.warren_bin, "-K", "-L", "9001:127.0.0.1:" .. port_b, "-D", "9002",
      "-R", "9100:127.0.0.1:" .. port_a, "--name", "integrity", "10.201.0.2:8100", "-k", k })
    assert(wait.output(client, "relay port 9100", 15000), stderr_of(client) .. stderr_of(relay_b))
    local in_ns = { a, a, b }
    local started = 0
    integrity_runs.run(function(spec)
      started = started + 1
      return spawn_in(in_ns[started], spec)
    end, {
      { label = "-L", target = "127.0.0.1:9001", max = 65536 },
      { label = "-D SOCKS5", target = "127.0.0.1:" .. port_b, via = { "socks5", "127.0.0.1:9002" }, max = 65536 },
      { label = "-R", target = "127.0.0.1:9100", max = 65536 },
    })
    local c = stop(client)
    assert.equal(0, c.code, c.stderr)
    local counters = stop(link).stdout
    -- The link did its worst: every kind of damage happened during the run.
    for _, what in ipairs({ "lost", "duplicated", "reordered" }) do
      local n = tonumber(counters:match("a>b [^\n]- " .. what .. "=(%d+)"))
      assert(n and n > 0, what .. ": " .. counters)
    end
  end)

  it("sets the TCP carriers' congestion control per connection (--congestion), or says why not", function()
    local r = proc.warren({ "serve", "127.0.0.1:1", "--congestion", "no-such-cc", "-k", k })
    assert.equal(1, r.code)
    assert.matches("congestion control no%-such%-cc: the kernel refused it", r.stderr)
    -- A relay whose accepted connections use reno, while the client asks for bbr.
    local reno_relay
    for _ = 1, 5 do
      reno_relay = warren.relay({ listen = "127.0.0.1:" .. net.free_port(), key = k, congestion = "reno" })
      if reno_relay then break end
    end
    assert(reno_relay, "no relay")
    local port, lport = reno_relay:port(), net.free_port()
    local client = start({ "-L", lport .. ":127.0.0.1:" .. server_port, "127.0.0.1:" .. port, "-k", k,
      "--congestion", "bbr" })
    assert(net.wait_port(lport), stderr_of(client))
    local ss = proc.run({ "ss", "-tin", "state", "established",
      "( sport = :" .. port .. " or dport = :" .. port .. " )" })
    local relay_side = ss.stdout:match("127%.0%.0%.1:" .. port .. "%s+127%.0%.0%.1:%d+%s*\n%s*(%a+)")
    local client_side = ss.stdout:match("127%.0%.0%.1:%d+%s+127%.0%.0%.1:" .. port .. "%s*\n%s*(%a+)")
    assert.equal("reno", relay_side, ss.stdout)
    assert.equal("bbr", client_side, ss.stdout)
    local c = stop(client)
    assert.equal(0, c.code, c.stderr)
    r = proc.warren({ "-L", "1:127.0.0.1:2", "127.0.0.1:" .. port, "--congestion", "no-such-cc", "-k", k })
    assert.equal(1, r.code)
    assert.matches("the kernel refused the congestion control no%-such%-cc", r.stderr)
    reno_relay:close()
  end)

  it("tells the user when KCP cannot be combined", function()
    local r = proc.warren({ "-K", "--tls", "-L", "1:127.0.0.1:2", "127.0.0.1:9", "-k", k })
    assert.equal(1, r.code)
    assert.matches("KCP runs on UDP", r.stderr)
    r = proc.warren({ "-K", "--kcp-mode", "turbo", "-L", "1:127.0.0.1:2", "127.0.0.1:9", "-k", k })
    assert.equal(2, r.code)
    assert.matches("%-%-kcp%-mode takes normal, fast, fast2 or fast3", r.stderr)
    r = proc.warren({ "-L", "1:127.0.0.1:2", "kcp://127.0.0.1", "-k", k })
    assert.equal(2, r.code)
    assert.matches("needs a port", r.stderr)
  end)
end)
