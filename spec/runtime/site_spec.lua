-- luacheck: std +busted
-- The fallback site (-P DIR) on a relay's port: visitors without the key get an ordinary static
-- web site (curl: pages, ranges, HEAD, 404, traversal attempts), garbage gets the site's 400, and
-- clients come in over TLS on the same port.
local warren = require("warren")
local uv = require("luv")
local proc = require("helpers.proc")
local net = require("helpers.net")
local wait = require("helpers.wait")

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

local function curl(...)
  local r = proc.run({ "curl", "-s", "-m", "5", ... })
  return r.stdout, r.code
end

describe("a relay with -P DIR", function()
  local dir, relay, port, k, fp
  before_each(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(uv.fs_mkdir(dir, tonumber("700", 8)))
    assert(uv.fs_mkdir(dir .. "/docs", tonumber("755", 8)))
    write(dir .. "/index.html", "<h1>welcome</h1>\n")
    write(dir .. "/docs/numbers.txt", "0123456789abcdefghij")
    k = proc.key()
    relay, port = proc.serve({ "-k", k, "--tls", "--self-signed", dir .. ".pem", "-P", dir })
    fp = wait.eventually(function() return select(2, relay:output()):match("certificate (sha256:%x+)") end, 5000)
  end)
  after_each(function()
    relay:kill()
    relay:wait(5000)
  end)

  it("serves the directory like a static web server", function()
    local base = "http://127.0.0.1:" .. port
    assert.equal("<h1>welcome</h1>\n", curl(base .. "/"))
    assert.equal("56789", curl("-r", "5-9", base .. "/docs/numbers.txt"))
    assert.matches("^HTTP/1%.1 200", curl("-I", base .. "/docs/numbers.txt"))
    assert.equal("404", curl("-o", "/dev/null", "-w", "%{http_code}", base .. "/nothing-here"))
    assert.equal("301", curl("-o", "/dev/null", "-w", "%{http_code}", base .. "/docs"))
    for _, evil in ipairs({ "/../../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/docs/..%2f..%2fetc/passwd" }) do
      local body = curl("--path-as-is", base .. evil)
      assert.is_nil(body:find("root:", 1, true), evil)
    end
    assert.equal("<h1>welcome</h1>\n", curl("-k", "https://127.0.0.1:" .. port .. "/"))
    assert.is_truthy(select(2, relay:output()):find("fallback site", 1, true))
  end)

  it("gives garbage and raw clients the site's answer, and takes clients over TLS", function()
    local reply = net.exchange(port, "\1\2\3 not a request\r\n\r\n", { timeout = 5000 })
    assert.matches("^HTTP/1%.1 400", reply)
    local raw = assert(warren.client({ server = "127.0.0.1:" .. port, key = k }))
    local ok, err = raw:connect()
    assert.is_nil(ok)
    assert.matches("use %-%-tls", err)
    local echo, echo_port = net.echo_server()
    local client = assert(warren.client({ server = "tls://127.0.0.1:" .. port, key = k, pin = fp }))
    assert(client:connect())
    local fwd = assert(client:forward({ listen = "127.0.0.1:0", target = "127.0.0.1:" .. echo_port }))
    assert.equal("through tls", net.exchange(fwd:port(), "through tls", { want = 11, timeout = 5000 }))
    client:close()
    echo:close()
  end)
end)
