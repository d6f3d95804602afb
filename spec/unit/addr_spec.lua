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
    for _, bad in ipairs({ "", "host", "host:", "host:0", "host:65536", "host:12ab", "[::1:80", "[10.0.0.1]:80", "a b:1", "1:2:3" }) do
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

  it("rejects bad forwards", function()
    for _, bad in ipairs({ "", "a:b:c:d:e", "x", "1080:host:0", "1080:host:http", "[::1:9000" }) do
      assert.is_nil(addr.parse_forward(bad), bad)
    end
  end)
end)
