-- luacheck: std +busted
-- The warren binary as a user runs it: commands, flags, exit codes, REPL on a pipe, signals.
local warren = require("warren")
local proc = require("helpers.proc")
local wait = require("helpers.wait")
local uv = require("luv")

local function tmpfile(contents)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(contents)
  f:close()
  return path
end

describe("warren command line", function()
  it("prints the versions of its parts", function()
    local r = proc.warren({ "version" })
    assert.equal(0, r.code)
    assert.matches("^warren %d+%.%d+%.%d+\n", r.stdout)
    assert.matches("LuaJIT 2%.1", r.stdout)
    assert.matches("libuv " .. uv.version_string():gsub("%.", "%%."), r.stdout)
    assert.matches("\nluv %S+\n", r.stdout)
    assert.matches("mbedTLS 2%.%d+", r.stdout)
  end)

  it("runs -e code with luv on its loop", function()
    local r = proc.warren({ "-e", 'print(require("luv").version_string())' })
    assert.equal(0, r.code)
    assert.equal(uv.version_string() .. "\n", r.stdout)
  end)

  it("prints usage and exits 2 on an unknown flag", function()
    local r = proc.warren({ "--no-such-flag" })
    assert.equal(2, r.code)
    assert.matches("unknown option %-%-no%-such%-flag", r.stderr)
    assert.matches("usage: warren", r.stderr)
    assert.equal("", r.stdout)
  end)

  it("prints usage and exits 2 on an unknown command or no command", function()
    assert.equal(2, proc.warren({ "frobnicate" }).code)
    assert.equal(2, proc.warren({}).code)
  end)

  it("prints help on --help, -h and help with status 0", function()
    for _, flag in ipairs({ "--help", "-h", "help" }) do
      local r = proc.warren({ flag })
      assert.equal(0, r.code)
      assert.matches("usage: warren", r.stdout)
    end
  end)

  it("runs a script that sees its arguments and may await", function()
    local script = tmpfile([[
      local warren = require("warren")
      warren.sleep(5)
      print(arg[0]:match("[^/]+$") == ... and "no" or "named", #arg, arg[1], arg[2], select("#", ...))
    ]])
    local r = proc.warren({ "run", script, "one", "two" })
    os.remove(script)
    assert.equal(0, r.code)
    assert.equal("named\t2\tone\ttwo\t2\n", r.stdout)
  end)

  it("exits 1 with a traceback when a script fails", function()
    local script = tmpfile("local function f() error('script broke') end\nf()\n")
    local r = proc.warren({ "run", script })
    os.remove(script)
    assert.equal(1, r.code)
    assert.matches("script broke", r.stderr)
    assert.matches("stack traceback", r.stderr)
  end)

  it("reports a missing script clearly", function()
    local r = proc.warren({ "run", "/nonexistent/script.lua" })
    assert.equal(1, r.code)
    assert.matches("cannot open /nonexistent/script.lua", r.stderr)
  end)

  it("honours os.exit codes", function()
    assert.equal(7, proc.warren({ "-e", "os.exit(7)" }).code)
    local chunk = "require('warren').spawn(function() require('warren').sleep(5) os.exit(3) end)"
    assert.equal(3, proc.warren({ "-e", chunk }).code)
  end)

  it("keeps running after an error in a luv callback", function()
    local r = proc.warren({ "-e", [[
      local uv = require("luv")
      local t = uv.new_timer()
      t:start(1, 0, function() t:close(); error("callback broke") end)
      require("warren").sleep(30)
      print("alive")
    ]] })
    assert.equal(0, r.code)
    assert.equal("alive\n", r.stdout)
    assert.matches("callback broke", r.stderr)
    assert.matches("stack traceback", r.stderr)
  end)

  it("logs as JSON lines with --log-format json, and -q silences info", function()
    local code = "require('warren').log.info('hello %s', 'there', {port = 9})"
    local r = proc.warren({ "--log-format", "json", "-e", code })
    assert.matches('^{"time":"[^"]+","level":"info","msg":"hello there","port":9}\n$', r.stderr)
    assert.equal("", proc.warren({ "-q", "-e", code }).stderr)
    local debug = "require('warren').log.debug('detail')"
    assert.equal("", proc.warren({ "-e", debug }).stderr)
    assert.matches("debug detail", proc.warren({ "-v", "-e", debug }).stderr)
  end)
end)

describe("warren repl on a pipe", function()
  it("prints the value of an expression", function()
    local r = proc.warren({ "repl" }, { stdin = "return 6*7\n" })
    assert.equal(0, r.code)
    assert.equal("42\n", r.stdout)
  end)

  it("evaluates bare expressions, multi-line chunks, tables and errors", function()
    local input = table.concat({
      "1 + 1",
      "x = {a = 1, 'b', nested = {deep = {deeper = {deepest = true}}}}",
      "x",
      "for i = 1, 2 do",
      "  y = (y or 0) + i",
      "end",
      "y",
      "error('oops')",
      "return 1, nil, 'three'",
      "local a = )",
    }, "\n") .. "\n"
    local r = proc.warren({ "repl" }, { stdin = input })
    assert.equal(0, r.code)
    local lines = {}
    for line in r.stdout:gmatch("[^\n]+") do lines[#lines + 1] = line end
    assert.equal("2", lines[1])
    assert.equal('{ "b", a = 1, nested = { deep = { deeper = {...} } } }', lines[2])
    assert.equal("3", lines[3])
    assert.matches("^error: .*oops", lines[4])
    local rest = table.concat(lines, "\n", 5)
    assert.matches('1\tnil\t"three"', rest)
    assert.is_truthy(rest:find("error: repl:1: unexpected symbol near ')'", 1, true))
  end)

  it("runs each line as a task, so a line may await while timers fire", function()
    local input = table.concat({
      "t0 = require('luv').now()",
      "fired = false; timer = warren.timer(); timer:start(10, 0, function() fired = true end)",
      "warren.sleep(50)",
      "fired, require('luv').now() - t0 >= 40",
    }, "\n") .. "\n"
    local r = proc.warren({ "repl" }, { stdin = input })
    assert.equal(0, r.code)
    assert.matches("true\ttrue\n$", r.stdout)
  end)

  it("exits at end of input even with timers still running", function()
    local r = proc.warren({ "repl" }, { stdin = "t = warren.timer(); t:start(100000, 0, function() end)\n" })
    assert.equal(0, r.code)
  end)
end)

describe("warren signals", function()
  it("shuts down gracefully on SIGTERM, running shutdown handlers", function()
    local child = proc.start({ proc.warren_bin, "-e", [[
      local warren = require("warren")
      warren.on_shutdown(function() print("handler ran") end)
      local t = warren.timer()
      t:start(100000, 0, function() end)
      warren.on_shutdown(function() t:close() end)
      print("ready")
      io.stdout:flush()
    ]] })
    assert(wait.output(child, "ready"), "child never got ready")
    child:kill("sigterm")
    local r = assert(child:wait(5000))
    assert.equal(0, r.code)
    assert.matches("ready\nhandler ran\n", r.stdout)
  end)

  it("exits cleanly when a shutdown handler exits, or code makes handles after exiting", function()
    local child = proc.start({ proc.warren_bin, "-e", [[
      local warren = require("warren")
      warren.on_shutdown(function() warren.exit(3) end)
      print("ready")
      io.stdout:flush()
      warren.sleep(100000)
    ]] })
    assert(wait.output(child, "ready"), "child never got ready")
    child:kill("sigterm")
    local r = assert(child:wait(5000))
    assert.equal(3, r.code, r.stderr)
    r = proc.warren({ "-e", "warren = require('warren'); warren.exit(4); warren.timer():start(1e6, 0, print)" })
    assert.equal(4, r.code, r.stderr)
    assert.is_nil(r.stderr:find("still open"), r.stderr)
  end)

  it("forces the exit after the grace period", function()
    local child = proc.start({ proc.warren_bin, "-e", [[
      local warren = require("warren")
      warren.timer():start(100000, 0, function() end)
      local stop = warren.shutdown
      warren.on_signal("sigterm", function() stop(100) end)
      print("ready")
      io.stdout:flush()
    ]] })
    assert(wait.output(child, "ready"), "child never got ready")
    local t0 = uv.now()
    child:kill("sigterm")
    local r = assert(child:wait(5000))
    assert.equal(0, r.code)
    assert.is_true(uv.now() - t0 < 3000)
    assert.matches("grace period over", r.stderr)
  end)

  it("calls the reload handler on SIGHUP and keeps running", function()
    local child = proc.start({ proc.warren_bin, "-e", [[
      local warren = require("warren")
      local t = warren.timer()
      t:start(100000, 0, function() end)
      warren.on_reload(function() print("reloaded"); io.stdout:flush(); t:close() end)
      print("ready")
      io.stdout:flush()
    ]] })
    assert(wait.output(child, "ready"), "child never got ready")
    child:kill("sighup")
    local r = assert(child:wait(5000))
    assert.equal(0, r.code)
    assert.equal("ready\nreloaded\n", r.stdout)
  end)
end)

describe("warren's command-line messages and exit codes", function()
  local net = require("helpers.net")

  it("exits 2 on every usage error, naming the bad value and where it is", function()
    local closed = "127.0.0.1:" .. net.free_port()
    for _, case in ipairs({
      { { "-L", "127.0.0.1:9000:h:99999", closed, "-k", "x" },
        'bad port "99999" in %-L 127%.0%.0%.1:9000:h:99999: must be 1%-65535' },
      { { "-L", "99999:h:80", closed, "-k", "x" }, 'bad port "99999" in %-L 99999:h:80: must be 0%-65535' },
      { { "-L", "9000:h:80", "127.0.0.1:99999", "-k", "x" },
        'bad port "99999" in relay address 127%.0%.0%.1:99999: must be 1%-65535' },
      { { "-D", "99999", closed, "-k", "x" }, 'bad port "99999" in %-D 99999' },
      { { "-D", "1080", "127.0.0.1:http", "-k", "x" }, 'bad port "http" in relay address' },
      { { "-L", "9000:h:80", ":8100", "-k", "x" }, "relay address :8100 needs a host" },
      { { "-L", "9000:*:80", closed, "-k", "x" }, 'bad host "%*" in %-L 9000:%*:80' },
      { { "-L", "9000:h:80", closed }, "a key is required" },
      { { "-L", "9000:h:80", closed, "-k", "x", "-p", "y" }, "only one of" },
      { { "serve", "127.0.0.1:99999", "-k", "x" }, 'bad port "99999" in listen address 127%.0%.0%.1:99999' },
      { { "serve", "nosuch.invalid:8100", "-k", "x" },
        'bad host "nosuch%.invalid" in listen address nosuch%.invalid:8100: listen on an IP address' },
      { { "services", "127.0.0.1:0", "-k", "x" }, 'bad port "0" in relay address' },
    }) do
      local r = proc.warren(case[1])
      local line = table.concat(case[1], " ")
      assert.equal(2, r.code, line .. ": " .. r.stderr)
      assert.matches(case[2], r.stderr, 1, false, line)
      assert.is_nil(r.stderr:find("bad the", 1, true), line)
    end
  end)

  it("exits 1 on runtime failures, and says when the relay's name does not resolve", function()
    local r = proc.warren({ "-L", "9000:h:80", "127.0.0.1:" .. net.free_port(), "-k", "x" })
    assert.equal(1, r.code, r.stderr)
    assert.matches("cannot connect to relay 127%.0%.0%.1:%d+: connection refused", r.stderr)
    r = proc.warren({ "-L", "9000:h:80", "nosuch.invalid:8100", "-k", "x" }, { timeout = 30000 })
    assert.equal(1, r.code, r.stderr)
    assert.matches('cannot resolve relay host "nosuch%.invalid": ', r.stderr)
    assert.is_nil(r.stderr:find("invalid argument", 1, true), r.stderr)
    r = proc.warren({ "services", "nosuch.invalid:8100", "-k", "x" }, { timeout = 30000 })
    assert.equal(1, r.code, r.stderr)
    assert.matches('cannot resolve relay host "nosuch%.invalid": ', r.stderr)
  end)

  it("exits 130 on SIGINT and 143 on SIGTERM while still connecting, never 0", function()
    -- a relay that accepts and never answers
    local held = {}
    local silent, silent_port = assert(net.serve(function(peer) held[#held + 1] = peer end))
    for signal, code in pairs({ sigint = 130, sigterm = 143 }) do
      local before = #held
      local child = proc.start({ proc.warren_bin, "-L", net.free_port() .. ":h:80", "127.0.0.1:" .. silent_port,
        "-k", "x" })
      assert.is_truthy(wait.eventually(function() return #held > before end), "never connected")
      child:kill(signal)
      local r = assert(child:wait(5000))
      assert.equal(code, r.code, signal .. ": " .. r.stderr)
    end
    for _, peer in ipairs(held) do peer:close() end
    silent:close()
  end)

  it("takes * as BIND for all interfaces, as ssh does", function()
    local k, relay_port = proc.key(), net.free_port()
    local echo, echo_port = net.echo_server()
    local relay = proc.start({ proc.warren_bin, "serve", "127.0.0.1:" .. relay_port, "-k", k })
    assert(net.wait_port(relay_port), "relay did not start")
    -- a port free on every address (a test elsewhere may hold it on one), taken again if lost
    local function wildcard_port()
      for _ = 1, 50 do
        local p, s = net.free_port(), uv.new_tcp()
        local ok = s:bind("::", p) and s:listen(1, function() end)
        s:close()
        if ok then return p end
      end
      error("no port free on all interfaces")
    end
    local client, fwd_port, dyn_port
    for _ = 1, 3 do
      fwd_port, dyn_port = wildcard_port(), wildcard_port()
      client = proc.start({ proc.warren_bin, "-L", "*:" .. fwd_port .. ":127.0.0.1:" .. echo_port,
        "-D", "*:" .. dyn_port, "127.0.0.1:" .. relay_port, "-k", k })
      if wait.eventually(function() return client.code or select(2, client:output()):find("proxy %(") end, 15000)
        and not client.code then
        break
      end
      local r = assert(client:wait(5000))
      assert.matches("address already in use", r.stderr)
    end
    assert.is_nil(client.code, "client did not start")
    -- 127.0.0.2 is only reached by a listener on all interfaces, not on the default 127.0.0.1
    local function talk(host, port)
      local c = uv.new_tcp()
      local ok = warren.await(function(resolve)
        c:connect(host, port, function(e) resolve(not e) end)
      end, 3000)
      c:close()
      return ok
    end
    for _, host in ipairs({ "127.0.0.1", "127.0.0.2" }) do
      assert.is_true(talk(host, fwd_port), host)
      assert.is_true(talk(host, dyn_port), host)
    end
    assert.equal("star", net.exchange(fwd_port, "star", { want = 4 }))
    client:kill()
    relay:kill()
    local c = assert(client:wait(5000))
    relay:wait(5000)
    echo:close()
    assert.equal(0, c.code, c.stderr)
    assert.matches("forwarding %*:" .. fwd_port, c.stderr)
  end)

  it("tells in --help that -k is visible in ps, and what the exit codes mean", function()
    local r = proc.warren({ "--help" })
    assert.matches("%-k KEY[^\n]*\n[^\n]*ps", r.stdout)
    assert.matches("Exit status", r.stdout)
    assert.matches("2 [^\n]*usage", r.stdout)
  end)
end)

describe("warren processes", function()
  it("draw different random numbers, so reconnect jitter differs between clients", function()
    local seen = {}
    for _ = 1, 3 do
      local r = proc.warren({ "-e", "io.write(math.random())" })
      assert.equal(0, r.code)
      assert.is_nil(seen[r.stdout], "two processes drew " .. r.stdout)
      seen[r.stdout] = true
    end
  end)
end)
