-- luacheck: std +busted
-- Under valgrind, warren opens and closes handles of every kind (and leaves some open for the
-- shutdown to close) and exits with no leak and no invalid access.
local proc = require("helpers.proc")

local has_valgrind = os.execute("command -v valgrind >/dev/null 2>&1") == 0
local sanitized = os.getenv("WARREN_SANITIZED") == "1" -- ASan and valgrind do not mix
local describe_vg = (has_valgrind and not sanitized) and describe or pending

local script = [[
  local warren = require("warren")
  local uv = require("luv")
  -- a TCP echo over loopback, closed properly
  local server = uv.new_tcp()
  assert(server:bind("127.0.0.1", 0))
  local port = server:getsockname().port
  server:listen(16, function()
    local peer = uv.new_tcp()
    server:accept(peer)
    peer:read_start(function(err, data)
      if data then peer:write(data) else peer:close() end
    end)
  end)
  local client = uv.new_tcp()
  local echoed = warren.await(function(resolve)
    client:connect("127.0.0.1", port, function()
      client:read_start(function(_, data) resolve(data) end)
      client:write("ping")
    end)
  end, 5000)
  assert(echoed == "ping", echoed)
  client:close()
  -- tasks that finish, fail, get cancelled and stay suspended at exit
  warren.spawn(function() warren.sleep(1) end):join()
  warren.spawn(function() error("expected failure") end)
  warren.spawn(function() warren.sleep(1e6) end):cancel()
  warren.spawn(function() warren.sleep(1e6) end)
  -- timers of both kinds, some left running for the shutdown to close
  warren.timer():start(1e6, 0, function() end)
  uv.new_timer():start(1e6, 0, function() end)
  local t = warren.timer(); t:start(1, 0, function() end); warren.sleep(5); t:close()
  -- a child process
  local exited = warren.await(function(resolve)
    uv.spawn("true", {}, function(code) resolve(code) end)
  end, 5000)
  assert(exited == 0)
  print("done")
  warren.exit(0) -- the server and the running timers are closed by the shutdown
]]

describe_vg("warren under valgrind", function()
  local function valgrind(args, stdin)
    local spec = { "valgrind", "--leak-check=full", "--show-leak-kinds=definite,indirect,possible",
      "--errors-for-leak-kinds=definite,indirect,possible", "--error-exitcode=99", "-q",
      proc.warren_bin, stdin = stdin }
    for _, a in ipairs(args) do spec[#spec + 1] = a end
    return proc.run(spec, 120000)
  end

  it("exits cleanly after opening and closing handles", function()
    local r = valgrind({ "-e", script })
    assert.equal("done\n", r.stdout)
    assert.is_nil(r.stderr:find("==%d+=="), r.stderr)
    assert.equal(0, r.code, r.stderr)
  end)

  it("exits cleanly after a relay, a client and a tunnel carried traffic", function()
    local r = valgrind({ "run", proc.source_dir .. "/scripts/demo.lua", "2" })
    assert.matches("relay: 1 session", r.stdout)
    assert.is_nil(r.stderr:find("==%d+=="), r.stderr)
    assert.equal(0, r.code, r.stderr)
  end)

  it("exits cleanly after reverse tunnels, a proxy and a lease left pending", function()
    local reverse = [=[
      local warren = require("warren")
      local uv = require("luv")
      local key = require("warren.keys").generate()
      local echo = uv.new_tcp()
      assert(echo:bind("127.0.0.1", 0))
      echo:listen(16, function()
        local peer = uv.new_tcp()
        echo:accept(peer)
        peer:read_start(function(_, data) if data then peer:write(data) else peer:close() end end)
      end)
      local probe = uv.new_tcp()
      assert(probe:bind("127.0.0.1", 0))
      local outer = probe:getsockname().port
      probe:close()
      local relay = assert(warren.relay({ listen = "127.0.0.1:0", key = key, outer_bind = "127.0.0.1",
        hooks = { tap = function() end, user_close = function() end } }))
      assert(relay:add_ports(outer, outer))
      local client = assert(warren.client({ server = "127.0.0.1:" .. relay:port(), key = key }))
      assert(client:connect())
      local entry = assert(client:register({ outer = "any", inner = ":" .. echo:getsockname().port, name = "echo" }))
      assert(client:dynamic({ listen = "127.0.0.1:0" }))
      local c = uv.new_tcp()
      local got = warren.await(function(resolve)
        c:connect("127.0.0.1", entry.port, function(err)
          if err then return resolve(err) end
          c:read_start(function(_, data) resolve(data) end)
          c:write("through")
        end)
      end, 5000)
      c:close()
      assert(got == "through", tostring(got))
      assert(client:active_services())
      client.session:close() -- leaves a lease running at exit
      warren.sleep(50)
      print("done")
      warren.exit(0)
    ]=]
    local r = valgrind({ "-e", reverse })
    assert.equal("done\n", r.stdout)
    assert.is_nil(r.stderr:find("==%d+=="), r.stderr)
    assert.equal(0, r.code, r.stderr)
  end)

  it("exits cleanly from a REPL driven through a pipe", function()
    local r = valgrind({ "repl" }, "t = warren.timer(); t:start(1e6, 0, print)\nreturn 6*7\n")
    assert.equal("42\n", r.stdout)
    assert.equal(0, r.code, r.stderr)
  end)
end)
