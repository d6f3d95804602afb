-- luacheck: std +busted
-- Address and ssh -L forward parsing.
local addr = require("warren.addr")

describe("warren.addr", function()
  it("parses host:port forms", function()
    assert.same({ host = "127.0.0.1", port = 8100 }, addr.parse("127.0.0.1:8100"))
    assert.same({ host = "::1", port = 80 }, addr.parse("[::1]:80"))
    assert.same({ host = "", port = 80 }, addr.parse(":80"))
    assert.same({ host = "", port = 80 }, addr.parse("80"))
    assert.same({ host = "relay.example", port = 443 }, addr.parse("relay.example:443"))
  end)

  it("rejects bad addresses with a reason", function()
    local bads = { "", "host", "host:", "host:0", "host:65536", "host:12ab", "[::1:80", "[10.0.0.1]:80", "a b:1",
      "1:2:3" }
    for _, bad in ipairs(bads) do
      local r, err = addr.parse(bad)
      assert.is_nil(r, bad)
      assert.is_string(err, bad)
    end
    assert.is_nil(addr.parse(":80", { host_required = true }))
    assert.same({ host = "", port = 0 }, addr.parse(":0", { allow_zero = true }))
  end)

  it("formats addresses", function()
    assert.equal("[::1]:80", addr.format({ host = "::1", port = 80 }))
    assert.equal("127.0.0.1:9", addr.format({ host = "127.0.0.1", port = 9 }))
  end)

  it("parses every ssh -L form", function()
    assert.same({ listen = { host = "127.0.0.1", port = 1080 } }, addr.parse_forward("1080"))
    assert.same({ listen = { host = "0.0.0.0", port = 1080 }, bind = "0.0.0.0" }, addr.parse_forward("0.0.0.0:1080"))
    assert.same({ listen = { host = "127.0.0.1", port = 9000 }, target = { host = "127.0.0.1", port = 5201 },
      bind = "127.0.0.1" }, addr.parse_forward("127.0.0.1:9000:127.0.0.1:5201"))
    assert.same({ listen = { host = "127.0.0.1", port = 1080 }, target = { host = "", port = 1080 } },
      addr.parse_forward("1080::1080"))
    assert.same({ listen = { host = "127.0.0.1", port = 1080 }, target = { host = "server2", port = 1080 } },
      addr.parse_forward("1080:server2:1080"))
    assert.same({ listen = { host = "::1", port = 9000 }, target = { host = "::1", port = 22 }, bind = "::1" },
      addr.parse_forward("[::1]:9000:[::1]:22"))
    -- an empty BIND is kept as written (-R leaves it to the relay); -L listens on 127.0.0.1
    assert.same({ listen = { host = "127.0.0.1", port = 1080 }, bind = "" }, addr.parse_forward(":1080"))
  end)

  it("classifies every bypass of a naive internal-address check", function()
    for ip, want in pairs({
      ["[::ffff:127.0.0.1]"] = "loopback", ["::ffff:127.0.0.1"] = "loopback", ["[::ffff:7f00:1]"] = "loopback",
      ["::FFFF:7F00:0001"] = "loopback", ["0:0:0:0:0:ffff:127.0.0.1"] = "loopback",
      ["0000:0000:0000:0000:0000:FFFF:7F00:0001"] = "loopback", ["::7f00:1"] = "loopback",
      ["::127.0.0.1"] = "loopback", ["::ffff:0:127.0.0.1"] = "loopback", ["64:ff9b::127.0.0.1"] = "loopback",
      ["2002:7f00:1::"] = "loopback", ["::ffff:10.1.2.3"] = "private", ["::ffff:a9fe:a9fe"] = "link_local",
      ["::ffff:0.0.0.0"] = "unspecified", ["[::]"] = "unspecified", ["::"] = "unspecified",
      ["0:0:0:0:0:0:0:0"] = "unspecified", ["::1"] = "loopback", ["[::1]"] = "loopback",
      ["0:0::0:1"] = "loopback", ["0000::0001"] = "loopback",
      ["fe80::1%eth0"] = "link_local", ["FE80::1%25lo"] = "link_local", ["[fe80::1%2]"] = "link_local",
      ["febf:ffff::1"] = "link_local", ["fc00::1"] = "private", ["FD12:3456::1"] = "private",
      ["fec0::1"] = "private", ["ff02::1"] = "multicast", ["2001:db8::1"] = "reserved",
      ["2606:4700:4700::1111"] = "global", ["2001:4860::8888"] = "global", ["::ffff:8.8.8.8"] = "global",
    }) do
      assert.equal(want, (addr.classify(ip)), ip)
      assert.equal(want ~= "global", (addr.is_internal(ip)), ip)
    end
  end)

  it("classifies IPv4", function()
    for ip, want in pairs({
      ["0.0.0.0"] = "unspecified", ["0.255.1.2"] = "unspecified", ["127.0.0.1"] = "loopback",
      ["127.255.255.254"] = "loopback", ["10.0.0.1"] = "private", ["172.16.0.1"] = "private",
      ["172.31.255.255"] = "private", ["172.32.0.1"] = "global", ["192.168.1.1"] = "private",
      ["100.64.0.1"] = "private", ["100.127.255.255"] = "private", ["100.128.0.1"] = "global",
      ["169.254.169.254"] = "link_local", ["224.0.0.1"] = "multicast", ["239.255.255.255"] = "multicast",
      ["255.255.255.255"] = "broadcast", ["240.0.0.1"] = "reserved", ["192.0.2.1"] = "reserved",
      ["198.18.0.1"] = "reserved", ["8.8.8.8"] = "global", ["93.184.215.14"] = "global",
      ["[127.0.0.1]"] = "loopback",
    }) do
      assert.equal(want, (addr.classify(ip)), ip)
    end
  end)

  it("gives the canonical text of what it classified: IPv4 for embedded IPv4", function()
    assert.same({ "loopback", "127.0.0.1" }, { addr.classify("[::FFFF:7f00:1]") })
    assert.same({ "link_local", "fe80::1" }, { addr.classify("FE80:0:0:0:0:0:0:1%eth0") })
    assert.same({ "global", "2001:4860::8888" }, { addr.classify("2001:4860:0000:0:0:0:0:8888") })
    assert.same({ "global", "1:0:0:1::1" }, { addr.classify("1:0:0:1:0:0:0:1") })
    assert.same({ "global", "1:2:3:4:5:6:7:0" }, { addr.classify("1:2:3:4:5:6:7::") })
  end)

  it("refuses what is not an IP address, so a policy can refuse it too", function()
    for _, bad in ipairs({ "", "localhost", "1.2.3", "1.2.3.4.5", "256.0.0.1", "127.0.0.01", "0x7f.0.0.1",
      "127.1", "::1::", ":1::", "1:::2", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7", "12345::", "::g",
      "1.2.3.4::", "::1.2.3", "fe80::1%", "[::1", "::ffff:127.0.0.256", " ::1" }) do
      local class, err = addr.classify(bad)
      assert.is_nil(class, bad)
      assert.matches("not an IP address", err)
      assert.is_nil((addr.is_internal(bad)), bad)
    end
    assert.is_nil(addr.classify(nil))
  end)

  it("keeps examples/acl.lua off every internal form", function()
    local acl = dofile("examples/acl.lua")
    for _, ip in ipairs({ "::ffff:127.0.0.1", "::ffff:7f00:1", "::", "0.0.0.0", "127.0.0.1", "::1", "10.0.0.1",
      "100.64.1.1", "169.254.169.254", "fe80::1%eth0", "fd00::1", "64:ff9b::a00:1", "not-an-ip" }) do
      local ok, why = acl.dial("example.org", 80, { addresses = { "93.184.215.14", ip } })
      assert.is_false(ok, ip)
      assert.is_string(why)
    end
    local public = { "93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c" }
    assert.is_true(acl.dial("example.org", 443, { addresses = public }))
    assert.is_false((acl.dial("example.org", 25, { addresses = { "93.184.215.14" } })))
  end)

  it("rejects bad forwards", function()
    for _, bad in ipairs({ "", "a:b:c:d:e", "x", "1080:host:0", "1080:host:http", "[::1:9000" }) do
      assert.is_nil(addr.parse_forward(bad), bad)
    end
  end)
end)
