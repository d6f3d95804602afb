-- luacheck: std +busted
-- README.md as a user meets it: every ```lua block runs for real, and the cheap shell lines
-- (keygen, -e, the REPL, --help) run with their shown output checked. A ```lua block that cannot
-- run fails here; a block that is not meant to run (an output sample) takes a plain ``` fence.
--
-- Snippets get what a reader would supply through the environment: WARREN_KEY (the key), RELAY (a
-- running relay with a pool of outer ports), LISTEN and PORTS (free for a relay of their own).
-- A snippet that reads LISTEN is a relay: once it listens, a `warren -R` client registers a
-- service on it and a user goes through, then SIGTERM must stop it cleanly. Any other snippet must
-- finish by itself, except a declared client (a snippet returning `tunnels` through RELAY): once
-- its -R services are registered, SIGTERM must stop it cleanly. Either way: status 0, and no
-- error logged.
local uv = require("luv")
local proc = require("helpers.proc")
local net = require("helpers.net")
local wait = require("helpers.wait")

local readme_path = proc.source_dir .. "/README.md"

-- The fenced blocks of the README, in order: {lang =, body =, line = first line of the body}.
local function fenced_blocks()
  local f = assert(io.open(readme_path))
  local blocks, current, n = {}, nil, 0
  for line in f:lines() do
    n = n + 1
    local fence = line:match("^```(%S*)%s*$")
    if fence and current then
      blocks[#blocks + 1] = current
      current = nil
    elseif fence then
      current = { lang = fence, line = n + 1, lines = {} }
    elseif current then
      current.lines[#current.lines + 1] = line
    end
  end
  f:close()
  assert(not current, "README.md: unclosed ``` fence at line " .. (current and current.line - 1 or 0))
  for _, b in ipairs(blocks) do b.body = table.concat(b.lines, "\n") .. "\n" end
  return blocks
end

local function tmpfile(contents)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(contents)
  f:close()
  return path
end

-- What a failed or noisy run looks like in a message.
local function describe_run(what, r)
  return string.format("%s: status %s\n--- stdout\n%s--- stderr\n%s", what, tostring(r.code), r.stdout, r.stderr)
end

local function assert_clean(what, r)
  assert.equal(0, r.code, describe_run(what, r))
  for _, bad in ipairs({ "%d%dZ error ", "task failed", "traceback", "not in a task" }) do
    assert.is_nil(r.stderr:find(bad), describe_run(what, r))
  end
end

local bin_dir = proc.warren_bin:match("^(.*)/[^/]+$") or "."

-- A shell line run as a reader would type it, with this build's warren first on PATH.
local function sh(line, cwd)
  return proc.run({ "sh", "-c", line, cwd = cwd, env = { PATH = bin_dir .. ":" .. os.getenv("PATH") } }, 20000)
end

describe("README.md", function()
  local blocks = fenced_blocks()
  local k, relay, relay_port, echo, echo_port

  setup(function()
    k = proc.key()
    relay_port = net.free_port()
    local from, to = net.free_range(4)
    -- the key through the environment, as the README recommends
    relay = proc.start({ proc.warren_bin, "serve", "127.0.0.1:" .. relay_port, "--ports", from .. "-" .. to,
      env = { WARREN_KEY = k } })
    assert(net.wait_port(relay_port), "relay did not start")
    echo, echo_port = net.echo_server()
  end)

  teardown(function()
    relay:kill()
    local r = relay:wait(5000)
    echo:close()
    assert_clean("the specs' relay", r)
  end)

  it("has Lua snippets, and each one runs", function()
    local ran = 0
    for _, b in ipairs(blocks) do
      if b.lang == "lua" then
        local what = "README.md line " .. b.line
        local script = tmpfile(b.body)
        local listen_port = net.free_port()
        local from, to = net.free_range(4)
        local child = proc.start({ proc.warren_bin, "run", script, env = { WARREN_KEY = k,
          RELAY = "127.0.0.1:" .. relay_port, LISTEN = "127.0.0.1:" .. listen_port, PORTS = from .. "-" .. to } })
        if b.body:find("LISTEN", 1, true) then
          assert.is_truthy(wait.eventually(function() return child.code or net.wait_port(listen_port, 200) end, 10000))
          if child.code then error(describe_run(what .. " stopped before it listened", child:wait())) end
          -- its hooks see a registration, a user and the user's end
          local client = proc.start({ proc.warren_bin, "-R", "0:127.0.0.1:" .. echo_port, "--name", "readme",
            "127.0.0.1:" .. listen_port, env = { WARREN_KEY = k } })
          if not wait.output(client, "relay port", 10000) then
            client:kill()
            error(describe_run(what .. ": -R did not register", client:wait()))
          end
          local outer = tonumber(client:output():match("relay port (%d+)"))
          assert.equal("through the hooks", net.exchange(outer, "through the hooks", { want = 17 }))
          assert.is_truthy(wait.eventually(function() return select(2, child:output()):find("left", 1, true) end),
            what .. ": no user_close log: " .. select(2, child:output()))
          client:kill()
          assert_clean(what .. " (-R client)", assert(client:wait(5000)))
          child:kill()
        elseif b.body:find("RELAY", 1, true) and b.body:find("tunnels", 1, true) then
          if not wait.output(child, "relay port", 10000) then
            child:kill()
            error(describe_run(what .. ": the declared client did not register", child:wait(5000)))
          end
          child:kill()
        end
        local r = child:wait(30000)
        os.remove(script)
        assert(r, what .. " did not finish in 30 s")
        assert_clean(what, r)
        ran = ran + 1
      end
    end
    assert.is_true(ran >= 3, "only " .. ran .. " lua blocks found")
  end)

  it("runs its cheap shell lines and shows their real output", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(uv.fs_mkdir(dir, 448))
    local ran = 0
    for _, b in ipairs(blocks) do
      if b.lang == "sh" then
        local lines = b.lines
        for i, line in ipairs(lines) do
          local prompt = line:match("^%$ (.*)$")
          local cmd = (prompt or line):gsub("%s+#.*$", "")
          if cmd:find("warren keygen", 1, true) or cmd:find("warren %-e ") or cmd:find("| warren repl", 1, true)
            or cmd:find("warren version", 1, true) or cmd:find("warren %-%-help") then
            local r = sh(cmd, dir)
            assert.equal(0, r.code, describe_run("README.md line " .. (b.line + i - 1) .. ": " .. cmd, r))
            if prompt then -- the lines up to the next prompt are what it prints
              local shown = {}
              for j = i + 1, #lines do
                if lines[j]:match("^%$ ") then break end
                shown[#shown + 1] = lines[j]
              end
              assert.equal(table.concat(shown, "\n") .. "\n", r.stdout, "README.md line " .. (b.line + i - 1))
            end
            ran = ran + 1
          end
        end
      end
    end
    -- the key file the Tunnels section makes is a key the relay takes, readable by its owner only
    local f = assert(io.open(dir .. "/relay.key"))
    assert.matches("^[%w_-]+\n$", f:read("*a"))
    f:close()
    assert.equal(tonumber("600", 8), require("bit").band(uv.fs_stat(dir .. "/relay.key").mode, tonumber("777", 8)))
    local r = proc.warren({ "-e", string.format("assert(require('warren.keys').resolve({ key_file = %q }))",
      dir .. "/relay.key") })
    assert.equal(0, r.code, r.stderr)
    os.remove(dir .. "/relay.key")
    uv.fs_rmdir(dir)
    assert.is_true(ran >= 3, "only " .. ran .. " cheap shell lines found")
  end)

  it("uses only flags that warren --help knows", function()
    local help = proc.warren({ "--help" }).stdout
    for _, b in ipairs(blocks) do
      if b.lang == "sh" then
        for i, line in ipairs(b.lines) do
          local cmd = (line:match("^%$ (.*)$") or line):gsub("%s+#.*$", "")
          if cmd:match("^warren ") or cmd:find("%(umask 077; warren ") then
            for flag in cmd:gmatch("%s(%-%-?%a[%w-]*)") do
              assert.is_truthy(help:find(flag, 1, true), "README.md line " .. (b.line + i - 1) .. ": " .. flag)
            end
          end
        end
      end
    end
  end)
end)
