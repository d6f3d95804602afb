-- luacheck: std +busted
-- The session's cipher, agreed in the handshake: real relays and clients (processes and the
-- Lua API) settle on each cipher, move bytes intact under it, and a cipher one side insists on
-- and the other refuses ends in a clear error at once. (Tampering: spec/c/test_handshake_cipher.)
local warren = require("warren")
local core = require("warren.core")
local proc = require("helpers.proc")
local net = require("helpers.net")
local wait = require("helpers.wait")

-- libcrypto and this check hide AES-NI and PCLMULQDQ from a process given this mask.
local NO_AES = { OPENSSL_ia32cap = "~0x200000200000000" }

-- Does this machine run AES-256-GCM in hardware? (x86 flags; elsewhere the spec expects ChaCha.)
local function cpu_has_aes()
  local f = io.open("/proc/cpuinfo")
  if not f then return false end
  local info = f:read("*a")
  f:close()
  local flags = info:match("\nflags%s*:([^\n]*)") or ""
  return flags:find(" aes", 1, true) ~= nil and flags:find(" pclmulqdq", 1, true) ~= nil
end

-- A relay process on a free port with extra arguments and environment.
local function relay(k, extra, env)
  local args = { "-k", k }
  for _, a in ipairs(extra or {}) do args[#args + 1] = a end
  return proc.serve(args, env)
end

local function stop(child)
  child:kill()
  child:wait(5000)
end

describe("the session cipher", function()
  local echo, echo_port, k
  local aes_here = cpu_has_aes()
  setup(function()
    echo, echo_port = net.echo_server()
    k = proc.key()
  end)
  teardown(function() echo:close() end)

  -- warren -L against the relay; returns the cipher its log names, after a byte-exact exchange.
  local function forward_cipher(relay_port, extra, env)
    local local_port = net.free_port()
    local spec = { proc.warren_bin, "-L", string.format("127.0.0.1:%d:127.0.0.1:%d", local_port, echo_port),
      "127.0.0.1:" .. relay_port, "-k", k, env = env }
    for _, a in ipairs(extra or {}) do spec[#spec + 1] = a end
    local client = proc.start(spec)
    assert(net.wait_port(local_port), "forward did not start")
    local data = string.rep("cipher test ", 20000)
    assert.equal(data, net.exchange(local_port, data, { want = #data }))
    local cipher = select(2, client:output()):match("connected to relay %S+ %(([%w-]+)%)")
    stop(client)
    return cipher
  end

  it("agrees on each cipher between warren processes and carries bytes intact", function()
    local cases = {
      -- relay flags, relay env, client flags, client env, expected
      { {}, nil, { "--cipher", "aes-256-gcm" }, nil, "aes-256-gcm" },
      { {}, nil, { "--cipher", "chacha20-poly1305" }, nil, "chacha20-poly1305" },
      { { "--cipher", "aes-256-gcm" }, NO_AES, {}, NO_AES, "aes-256-gcm" },
      { { "--cipher", "chacha20-poly1305" }, nil, {}, nil, "chacha20-poly1305" },
      { {}, nil, { "--cipher", "auto" }, nil, aes_here and "aes-256-gcm" or "chacha20-poly1305" },
      -- auto: AES-256-GCM only when both ends have the instructions
      { {}, NO_AES, {}, nil, "chacha20-poly1305" },
      { {}, nil, {}, NO_AES, "chacha20-poly1305" },
    }
    for i, c in ipairs(cases) do
      local r, port = relay(k, c[1], c[2])
      assert.equal(c[5], forward_cipher(port, c[3], c[4]), "case " .. i)
      stop(r)
    end
  end)

  it("fails at once with a clear error when the relay does not accept the forced cipher", function()
    for _, pair in ipairs({ { "chacha20-poly1305", "aes-256-gcm" }, { "aes-256-gcm", "chacha20-poly1305" } }) do
      local r, port = relay(k, { "--cipher", pair[1] })
      local t0 = os.time()
      local res = proc.warren({ "-L", "127.0.0.1:" .. net.free_port() .. ":127.0.0.1:" .. echo_port,
        "127.0.0.1:" .. port, "-k", k, "--cipher", pair[2] }, { timeout = 20000 })
      assert.equal(1, res.code)
      assert.matches("the relay does not accept cipher " .. pair[2]:gsub("%-", "%%-"), res.stderr)
      assert.is_true(os.time() - t0 < 8, "no waiting for a timeout")
      assert.is_truthy(wait.eventually(function()
        return select(2, r:output()):find("offered no cipher this relay accepts", 1, true)
      end, 5000), "the relay logs the refusal")
      -- the relay keeps serving clients that take its cipher
      assert.equal(pair[1], forward_cipher(port, {}))
      stop(r)
    end
  end)

  it("is chosen and reported through the Lua API", function()
    local rel = assert(warren.relay({ listen = "127.0.0.1:0", key = k, cipher = "chacha20-poly1305" }))
    local server = "127.0.0.1:" .. rel:port()
    local client = assert(warren.client({ server = server, key = k }))
    assert(client:connect())
    assert.equal("chacha20-poly1305", client.session:stats().cipher)
    client:close()
    local forced = assert(warren.client({ server = server, key = k, cipher = "aes-256-gcm" }))
    local ok, err = forced:connect()
    assert.is_nil(ok)
    assert.matches("does not accept cipher aes%-256%-gcm", err)
    forced:close()
    rel:close()
    assert.has_error(function() warren.relay({ listen = "127.0.0.1:0", key = k, cipher = "aes" }) end)
    assert.has_error(function()
      core.session_connect({ host = "127.0.0.1", port = 9, key = string.rep("k", 32), cipher = "rot13" })
    end)
  end)

  it("refuses an unknown --cipher on the command line", function()
    local res = proc.warren({ "serve", "127.0.0.1:0", "-k", k, "--cipher", "aes-128-gcm" })
    assert.equal(2, res.code)
    assert.matches("%-%-cipher takes auto, aes%-256%-gcm or chacha20%-poly1305", res.stderr)
  end)
end)
