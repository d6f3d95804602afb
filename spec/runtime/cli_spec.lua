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
    assert.equal(3, proc.warren({ "-e", "require('warren').spawn(function() require('warren').sleep(5) os.exit(3) end)" }).code)
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
