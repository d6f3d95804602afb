-- luacheck: std +busted
-- The control socket (--control PATH) of `warren serve`, `warren -L/-D/-R` and `warren run`:
-- its mode, who it serves, `warren status` and `warren reload` against it.
local warren = require("warren")
local uv = require("luv")
local proc = require("helpers.proc")
require("helpers.reaper").per_test(before_each, after_each)
local net = require("helpers.net")
local wait = require("helpers.wait")

-- A directory others may enter (the uid test runs a client as nobody), for sockets only.
local dir = os.tmpname()
os.remove(dir)
assert(uv.fs_mkdir(dir, tonumber("755", 8)))
assert(uv.fs_chmod(dir, tonumber("755", 8)))

local count = 0
local function socket_path()
  count = count + 1
  return string.format("%s/c%d.sock", dir, count)
end

local function answers(sock)
  return wait.eventually(function()
    return uv.fs_stat(sock) and proc.warren({ "status", "--control", sock }).code == 0
  end, 10000)
end

-- Sends raw bytes on the socket and returns everything it answers.
local function raw(sock, bytes)
  local pipe = uv.new_pipe(false)
  local parts = {}
  local done = warren.await(function(resolve)
    pipe:connect(sock, function(err)
      if err then return resolve(nil) end
      pipe:write(bytes)
      pipe:read_start(function(_, data)
        if data then parts[#parts + 1] = data else resolve(true) end
      end)
    end)
  end, 5000)
  pipe:close()
  return done and table.concat(parts)
end

-- A declared client with one tunnel, for the prompts below; returns child, sock, relay.
local function declared_client(key)
  local relay, relay_port = proc.serve({ "-k", key })
  local sock = socket_path()
  local script = dir .. "/client" .. count .. ".lua"
  local f = assert(io.open(script, "w"))
  f:write(string.format("return { server = %q, key = %q, tunnels = { web = { D = '127.0.0.1:0' } } }\n",
    "127.0.0.1:" .. relay_port, key))
  f:close()
  local child = proc.start({ proc.warren_bin, "--control", sock, "run", script })
  assert(answers(sock), "the client's control socket did not answer")
  return child, sock, relay
end

describe("control socket", function()
  local key, relay, relay_port, relay_sock, echo, echo_port

  setup(function()
    key = proc.key()
    relay_sock = socket_path()
    relay, relay_port = proc.serve({ "-k", key, "--control", relay_sock })
    echo, echo_port = net.echo_server()
    assert(answers(relay_sock), "the relay's control socket did not answer")
  end)

  teardown(function()
    relay:kill()
    relay:wait(5000)
    echo:close()
  end)

  it("is a socket of mode 0600", function()
    local st = assert(uv.fs_stat(relay_sock))
    assert.equal("socket", st.type)
    assert.equal(tonumber("600", 8), st.mode % 512)
  end)

  it("shows a -L client's tunnels with their bytes, and the relay's sessions and streams", function()
    local sock = socket_path()
    local lport = net.free_port()
    local client = proc.start({ proc.warren_bin, "-L", string.format("%d:127.0.0.1:%d", lport, echo_port),
      "127.0.0.1:" .. relay_port, "-k", key, "--control", sock })
    assert.is_true(answers(sock))
    local payload = string.rep("x", 10000)
    assert.equal(payload, net.exchange(lport, payload, { want = #payload }))
    local r
    assert.is_true(wait.eventually(function()
      r = proc.warren({ "status", "--control", sock })
      return r.stdout:find("10000%s+10000") ~= nil -- bytes up and down, once the connection ended
    end, 5000), r and r.stdout)
    assert.matches("relay session: up", r.stdout)
    assert.matches("TUNNEL%s+KIND", r.stdout)
    assert.matches(lport .. "%s+L%s+" .. lport, r.stdout)
    local j = proc.warren({ "status", "--control", sock, "--json" })
    assert.equal(0, j.code)
    assert.matches('"bytes_up":10000', j.stdout)
    assert.matches('"connected":true', j.stdout)
    r = proc.warren({ "status", "--control", relay_sock, "--json" })
    assert.equal(0, r.code)
    assert.matches('"sessions_active":1', r.stdout)
    assert.matches('"bytes_up":10000', r.stdout)
    -- a process started from flags has no script to reload
    r = proc.warren({ "reload", "--control", sock })
    assert.equal(1, r.code)
    assert.matches("nothing to reload", r.stderr)
    client:kill()
    assert.equal(0, client:wait(5000).code)
    assert.is_nil(uv.fs_stat(sock))
  end)

  it("refuses a peer of another uid, even when the file's mode would let it in", function()
    if uv.getuid() ~= 0 then
      pending("needs root to run a client as another user (setpriv)")
      return
    end
    local setpriv = proc.run({ "/bin/sh", "-c", "command -v setpriv" }).stdout:match("%S+")
    if not setpriv then
      pending("setpriv is not installed")
      return
    end
    local as_nobody = { setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups", proc.warren_bin, "status",
      "--control", relay_sock }
    local probe = proc.run({ setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups", proc.warren_bin,
      "version" })
    if probe.code ~= 0 then
      pending("the warren binary cannot run as nobody here: " .. probe.stderr)
      return
    end
    -- the mode keeps nobody out first
    local r = proc.run(as_nobody)
    assert.equal(1, r.code)
    assert.matches("EACCES", r.stderr)
    -- and the uid check does when the mode is opened
    assert(uv.fs_chmod(relay_sock, tonumber("666", 8)))
    r = proc.run(as_nobody)
    local attach = proc.run({ setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups", proc.warren_bin,
      "repl", "--attach", relay_sock, stdin = "os.exit(7)\n" })
    uv.fs_chmod(relay_sock, tonumber("600", 8))
    assert.equal(1, r.code)
    assert.matches("permission denied", r.stderr)
    assert.equal("", r.stdout)
    assert.equal(1, attach.code)
    assert.matches("permission denied", attach.stderr)
    assert.is_nil(relay.code) -- the relay did not run the line
    assert.is_true(wait.eventually(function()
      return select(2, relay:output()):find("control socket: refused a peer with uid %d+") ~= nil
    end, 2000))
  end)

  it("answers an unknown request with an error, and a request without a line end with nothing", function()
    assert.matches("^error\nunknown request", raw(relay_sock, "shutdown now\n"))
    assert.matches("^error\nrequest too long", raw(relay_sock, string.rep("y", 5000)))
  end)

  it("will not take over a live socket or another file", function()
    local r = proc.warren({ "serve", "127.0.0.1:0", "-k", key, "--control", relay_sock })
    assert.equal(1, r.code)
    assert.matches("another process is listening there", r.stderr)
    local file = dir .. "/plain"
    assert(io.open(file, "w")):close()
    r = proc.warren({ "serve", "127.0.0.1:0", "-k", key, "--control", file })
    assert.equal(1, r.code)
    assert.matches("exists and is not a socket", r.stderr)
    os.remove(file)
  end)

  it("replaces a stale socket left by a process that died", function()
    local sock = socket_path()
    local first = proc.start({ proc.warren_bin, "serve", "127.0.0.1:0", "-k", key, "--control", sock })
    assert.is_true(answers(sock))
    first:kill("sigkill")
    first:wait(5000)
    assert.is_not_nil(uv.fs_stat(sock)) -- left behind
    local second = proc.start({ proc.warren_bin, "serve", "127.0.0.1:0", "-k", key, "--control", sock })
    assert.is_true(answers(sock))
    second:kill()
    second:wait(5000)
  end)

  it("says how to use status and reload, and what --watch needs", function()
    local r = proc.warren({ "status" })
    assert.equal(2, r.code)
    assert.matches("status needs %-%-control PATH", r.stderr)
    r = proc.warren({ "reload", "--control", dir .. "/nobody-here.sock" })
    assert.equal(1, r.code)
    assert.matches("cannot ask .*ENOENT", r.stderr)
    local script = dir .. "/imperative.lua"
    local f = assert(io.open(script, "w"))
    f:write("print('hello')\n")
    f:close()
    r = proc.warren({ "--watch", "run", script })
    assert.equal(1, r.code)
    assert.matches("need a script that returns a table", r.stderr)
    local help = proc.warren({ "--help" }).stdout
    for _, text in ipairs({ "status %-%-control PATH", "reload %-%-control PATH", "%-%-control PATH", "%-%-watch",
      "%-%-json" }) do
      assert.matches(text, help)
    end
  end)
end)

describe("warren repl --attach", function()
  teardown(function() proc.run({ "rm", "-rf", dir }) end) -- the last block of this file: its sockets go
  it("evaluates piped lines inside the running process, and logs each with the uid", function()
    local key = proc.key()
    local child, sock, relay = declared_client(key)
    local input = table.concat({
      "status().generation",
      "print('from', 'inside')",
      "for name, t in pairs(tunnels) do print(name, t.spec.kind) end",
      "local n =",
      "  6 * 7 return n",
      "fwd = client:forward{ listen = '127.0.0.1:0', target = '127.0.0.1:9' }",
      "fwd:port() > 0",
      "error('on purpose')",
      "warren.sleep(20) return 'awaited'",
    }, "\n") .. "\n"
    local r = proc.warren({ "repl", "--attach", sock }, { stdin = input })
    assert.equal(0, r.code, r.stderr)
    local want = { "1", "from\tinside", "web\tD", "42", "true", "error: on purpose" }
    local pos = 1
    for _, text in ipairs(want) do
      local at = r.stdout:find(text, pos, true)
      assert.is_not_nil(at, "missing " .. text .. " in:\n" .. r.stdout)
      pos = at + #text
    end
    assert.matches('"awaited"\n$', r.stdout)
    -- the forward made through the prompt lives in the process
    local st = proc.warren({ "status", "--control", sock }).stdout
    assert.matches("relay session: up", st)
    child:kill()
    child:wait(5000)
    local log = select(2, child:output())
    assert.matches("control socket uid %d+: attached a prompt", log)
    assert.matches("control socket uid %d+: repl> fwd = client:forward", log)
    assert.matches("forwarding 127%.0%.0%.1:%d+ %-> 127%.0%.0%.1:9", log)
    relay:kill()
    relay:wait(5000)
  end)

  it("says so when nothing listens there", function()
    local r = proc.warren({ "repl", "--attach", dir .. "/nothing.sock" }, { stdin = "1\n" })
    assert.equal(1, r.code)
    assert.matches("cannot attach to .*ENOENT", r.stderr)
  end)

  local has_tmux = os.execute("command -v tmux >/dev/null 2>&1") == 0
  local it_tty = has_tmux and it or pending
  it_tty("edits lines on a terminal; Ctrl-C drops a line or cancels the remote chunk; Ctrl-D detaches", function()
    local key = proc.key()
    local child, sock, relay = declared_client(key)
    local session = "warren-attach-spec-" .. uv.os_getpid()
    local function tmux(...) return proc.run({ "tmux", "-L", session, ... }, 5000) end
    local function screen() return tmux("capture-pane", "-p", "-t", session).stdout end
    local function wait_for(text)
      assert.is_true(wait.eventually(function() return screen():find(text, 1, true) ~= nil end, 5000),
        "screen never showed " .. text .. ":\n" .. screen())
    end
    local function keys(...) tmux("send-keys", "-t", session, ...) end
    tmux("new-session", "-d", "-s", session, "-x", "120", "-y", "40", string.format(
      "WARREN_HISTORY= %s repl --attach %s; echo exited-$?; sleep 30", proc.warren_bin, sock))
    finally(function() proc.run({ "tmux", "-L", session, "kill-server" }, 5000) end)
    wait_for(">")
    keys("status().generation + 100", "Enter")
    wait_for("101")
    keys("function f(x)", "Enter")
    wait_for(">>")
    keys("C-c")
    keys("f", "Enter") -- the incomplete chunk was dropped: f is not defined there
    wait_for("nil")
    keys("warren.sleep(60000)", "Enter")
    assert.is_true(wait.eventually(function() -- running in the process: Ctrl-C now cancels it there
      return select(2, child:output()):find("repl> warren.sleep(60000)", 1, true) ~= nil
    end, 5000))
    warren.sleep(100)
    keys("C-c")
    wait_for("cancelled")
    keys("'still' .. ' here'", "Enter")
    wait_for('"still here"')
    keys("C-d")
    wait_for("exited-0")
    assert.matches("cancelled the running chunk", select(2, child:output()))
    child:kill()
    child:wait(5000)
    relay:kill()
    relay:wait(5000)
  end)
end)
