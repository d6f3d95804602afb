-- luacheck: std +busted
-- The TLS carrier: a relay takes TLS and raw clients on one port; clients verify the relay by a
-- pinned fingerprint or a CA, and say clearly when that fails. Real processes, curl and openssl.
-- With WARREN_OTHER_BIN set to a warren built on the other TLS library (OpenSSL's libssl or
-- mbedTLS), clients and relays of the two builds also talk to each other (CI sets it).
local warren = require("warren")
local uv = require("luv")
local proc = require("helpers.proc")
local net = require("helpers.net")
local wait = require("helpers.wait")

local function tmpdir()
  local dir = os.tmpname()
  os.remove(dir)
  assert(uv.fs_mkdir(dir, tonumber("700", 8)))
  return dir
end

-- A relay process with TLS on its port; returns it, its port and its certificate's fingerprint.
local function tls_relay(k, extra)
  local args = { "-k", k, "--tls" }
  for _, a in ipairs(extra) do args[#args + 1] = a end
  local relay, port = proc.serve(args)
  local fp = wait.eventually(function() return select(2, relay:output()):match("certificate (sha256:%x+)") end, 5000)
  return relay, port, fp
end

local function sha256(data)
  return proc.run({ "sha256sum", stdin = data }).stdout:match("^(%x+)")
end

-- Runs fn with the spec helpers starting bin instead of the warren under test.
local function with_bin(bin, fn)
  local saved = proc.warren_bin
  proc.warren_bin = bin
  local ok, a, b, c = pcall(fn)
  proc.warren_bin = saved
  if not ok then error(a, 0) end
  return a, b, c
end

describe("the TLS carrier", function()
  local dir, k
  before_each(function()
    dir = tmpdir()
    k = proc.key()
  end)

  it("carries -L byte-exact with a pinned self-signed certificate, and raw clients share the port", function()
    local store = dir .. "/relay.pem"
    local relay, port, fp = tls_relay(k, { "--self-signed", store })
    assert.matches("^sha256:%x+$", fp)
    assert.equal(tonumber("600", 8), uv.fs_stat(store).mode % 512)
    local echo, echo_port = net.echo_server()
    local data = string.rep("0123456789abcdef", 65536) -- 1 MiB
    for _, server in ipairs({ "tls://127.0.0.1:" .. port, "127.0.0.1:" .. port }) do
      local client = assert(warren.client({ server = server, key = k, pin = fp }))
      assert(client:connect())
      local fwd = assert(client:forward({ listen = "127.0.0.1:0", target = "127.0.0.1:" .. echo_port }))
      local back = net.exchange(fwd:port(), data, { want = #data, timeout = 10000 })
      assert.equal(sha256(data), sha256(back or ""))
      client:close()
    end
    relay:kill()
    relay:wait(5000)
    -- The certificate is kept: a restarted relay shows the same one.
    local again, _, fp2 = tls_relay(k, { "--self-signed", store })
    assert.equal(fp, fp2)
    again:kill()
    again:wait(5000)
    echo:close()
  end)

  it("says which TLS library it runs on, in warren version and in the relay's log", function()
    local lib = warren.versions.tls
    assert.is_truthy(lib:match("^OpenSSL 3%.") or lib:match("^mbed TLS 2%."), lib)
    assert.matches("\nTLS carrier: " .. lib:gsub("%p", "%%%0") .. "\n", proc.warren({ "version" }).stdout)
    local relay = tls_relay(k, { "--self-signed", dir .. "/relay.pem" })
    assert.is_truthy(select(2, relay:output()):find("TLS on the same port too (" .. lib .. ")", 1, true))
    relay:kill()
    relay:wait(5000)
  end)

  it("talks to a relay and a client built on the other TLS library (WARREN_OTHER_BIN)", function()
    local other = os.getenv("WARREN_OTHER_BIN")
    if not other or other == "" then return pending("WARREN_OTHER_BIN is not set") end
    local theirs = proc.run({ other, "version" }).stdout:match("\nTLS carrier: ([^\n]+)")
    assert.is_not_nil(theirs, "WARREN_OTHER_BIN does not say which TLS library it uses")
    assert.not_equal(warren.versions.tls, theirs)
    local echo, echo_port = net.echo_server()
    local data = string.rep("0123456789abcdef", 65536) -- 1 MiB
    local store = dir .. "/relay.pem"

    -- Our client, their relay: by pin, and by the self-signed certificate as the CA.
    local relay, port, fp = with_bin(other, function() return tls_relay(k, { "--self-signed", store }) end)
    assert.is_truthy(select(2, relay:output()):find("TLS on the same port too (" .. theirs .. ")", 1, true))
    for _, trust in ipairs({ { pin = fp }, { ca = store, sni = "localhost" } }) do
      local client = assert(warren.client({ server = "tls://127.0.0.1:" .. port, key = k, pin = trust.pin,
        ca = trust.ca, sni = trust.sni }))
      assert(client:connect())
      local fwd = assert(client:forward({ listen = "127.0.0.1:0", target = "127.0.0.1:" .. echo_port }))
      local back = net.exchange(fwd:port(), data, { want = #data, timeout = 10000 })
      assert.equal(sha256(data), sha256(back or ""))
      client:close()
    end
    local wrong = proc.warren({ "-L", "127.0.0.1:0:127.0.0.1:9", "tls://127.0.0.1:" .. port, "-k", k })
    assert.matches("certificate verify failed: self%-signed certificate; use %-%-ca or %-%-pin", wrong.stderr)
    relay:kill()
    relay:wait(5000)

    -- Their client, our relay, which reads the certificate file their build made.
    local ours, our_port, our_fp = tls_relay(k, { "--self-signed", store })
    assert.equal(fp, our_fp)
    local lport = net.free_port()
    local client = proc.start({ other, "-L", "127.0.0.1:" .. lport .. ":127.0.0.1:" .. echo_port,
      "tls://127.0.0.1:" .. our_port, "-k", k, "--pin", our_fp })
    assert(net.wait_port(lport), "their client never listened")
    local back = net.exchange(lport, data, { want = #data, timeout = 10000 })
    assert.equal(sha256(data), sha256(back or ""))
    local refused = proc.run({ other, "-L", "127.0.0.1:0:127.0.0.1:9", "tls://127.0.0.1:" .. our_port, "-k", k,
      "--pin", "sha256:" .. string.rep("ab", 32) })
    assert.matches("does not match the pin sha256:abab", refused.stderr)
    for _, p in ipairs({ client, ours }) do
      p:kill()
      p:wait(5000)
    end
    echo:close()
  end)

  it("refuses a wrong pin and an unverifiable certificate with a clear error", function()
    local relay, port = tls_relay(k, { "--self-signed", dir .. "/relay.pem" })
    local r = proc.warren({ "-L", "127.0.0.1:0:127.0.0.1:9", "tls://127.0.0.1:" .. port, "-k", k,
      "--pin", "sha256:" .. string.rep("ab", 32) })
    assert.equal(1, r.code)
    assert.matches("does not match the pin sha256:abab", r.stderr)
    r = proc.warren({ "-L", "127.0.0.1:0:127.0.0.1:9", "tls://127.0.0.1:" .. port, "-k", k })
    assert.equal(1, r.code)
    assert.matches("certificate verify failed: self%-signed certificate; use %-%-ca or %-%-pin", r.stderr)
    relay:kill()
    relay:wait(5000)
  end)

  it("verifies a certificate from a CA of its own, names included", function()
    local function openssl(args)
      local r = proc.run(args)
      assert(r.code == 0, r.stderr)
    end
    openssl({ "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
      "-keyout", dir .. "/ca.key", "-out", dir .. "/ca.pem", "-days", "2", "-subj", "/CN=warren test CA" })
    openssl({ "openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
      "-keyout", dir .. "/relay.key", "-out", dir .. "/relay.csr", "-subj", "/CN=relay.test" })
    local ext = assert(io.open(dir .. "/ext.cnf", "w"))
    ext:write("subjectAltName=DNS:relay.test\n")
    ext:close()
    openssl({ "openssl", "x509", "-req", "-in", dir .. "/relay.csr", "-CA", dir .. "/ca.pem", "-CAkey",
      dir .. "/ca.key", "-CAcreateserial", "-out", dir .. "/relay.pem", "-days", "2", "-extfile", dir .. "/ext.cnf" })
    local relay, port = tls_relay(k, { "--cert", dir .. "/relay.pem", "--cert-key", dir .. "/relay.key" })
    local ok = assert(warren.client({ server = "tls://127.0.0.1:" .. port, key = k, ca = dir .. "/ca.pem",
      sni = "relay.test" }))
    assert(ok:connect())
    ok:close()
    local wrong = assert(warren.client({ server = "tls://127.0.0.1:" .. port, key = k, ca = dir .. "/ca.pem",
      sni = "other.test" }))
    local s, err = wrong:connect()
    assert.is_nil(s)
    assert.matches("other%.test", err)
    relay:kill()
    relay:wait(5000)
  end)

  it("shows HTTPS visitors the same 404 page as plain HTTP ones", function()
    local relay, port = tls_relay(k, { "--self-signed", dir .. "/relay.pem" })
    local https = proc.run({ "curl", "-sk", "-m", "5", "-o", "-", "-w", "%{http_code}",
      "https://127.0.0.1:" .. port .. "/" })
    assert.matches("404 Not Found.*404$", https.stdout)
    local http = proc.run({ "curl", "-s", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}",
      "http://127.0.0.1:" .. port .. "/" })
    assert.equal("404", http.stdout)
    relay:kill()
    relay:wait(5000)
  end)

  it("carries -R and -D over TLS", function()
    local pool = net.free_range(2)
    local relay, port, fp = tls_relay(k, { "--self-signed", dir .. "/relay.pem", "--ports", pool .. "-" .. pool + 1,
      "--outer-bind", "127.0.0.1" })
    local web, web_port = net.http_server("hello over tls")
    local pub = proc.start({ proc.warren_bin, "-R", pool .. ":127.0.0.1:" .. web_port, "--name", "web",
      "tls://127.0.0.1:" .. port, "-k", k, "--pin", fp })
    assert(wait.eventually(function()
      local r = proc.run({ "curl", "-s", "-m", "2", "http://127.0.0.1:" .. pool .. "/" })
      return r.stdout == "hello over tls"
    end, 10000), "the -R service never answered")
    local socks = net.free_port()
    local d = proc.start({ proc.warren_bin, "-D", "127.0.0.1:" .. socks, "tls://127.0.0.1:" .. port, "-k", k,
      "--pin", fp })
    assert(net.wait_port(socks))
    local r = proc.run({ "curl", "-s", "-m", "5", "-x", "socks5h://127.0.0.1:" .. socks,
      "http://127.0.0.1:" .. web_port .. "/" })
    assert.equal("hello over tls", r.stdout)
    for _, p in ipairs({ d, pub, relay }) do
      p:kill()
      p:wait(5000)
    end
    web:close()
  end)
end)
