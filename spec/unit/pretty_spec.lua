-- luacheck: std +busted
-- warren.pretty renders REPL results.
local pretty = require("warren.pretty")

describe("warren.pretty", function()
  it("renders scalars", function()
    assert.equal("42", pretty.format(42))
    assert.equal('"a\\nb"', pretty.format("a\nb"))
    assert.equal("nil", pretty.format(nil))
    assert.equal("true", pretty.format(true))
  end)

  it("renders arrays then sorted keys", function()
    assert.equal('{ 1, 2, a = "x", ["not id"] = 3 }', pretty.format({ 1, 2, a = "x", ["not id"] = 3 }))
    assert.equal("{}", pretty.format({}))
  end)

  it("bounds depth and items, and marks cycles", function()
    assert.equal("{ a = { b = {...} } }", pretty.format({ a = { b = { c = 1 } } }, { depth = 2 }))
    local t = {}
    t.self = t
    assert.equal("{ self = <cycle> }", pretty.format(t))
    local many = {}
    for i = 1, 10 do many[i] = i end
    assert.equal("{ 1, 2, 3, ... }", pretty.format(many, { items = 3 }))
  end)

  it("escapes control characters and malformed UTF-8 for a terminal", function()
    assert.equal("plain text", (pretty.escape("plain text")))
    assert.equal("\\e]0;owned\\x07\\e[2J", (pretty.escape("\27]0;owned\7\27[2J")))
    assert.equal("two\\nlines\\r\\ttab\\x7f", (pretty.escape("two\nlines\r\ttab\127")))
    assert.equal("\\u009b31m", (pretty.escape("\194\15531m"))) -- C1 CSI as UTF-8
    assert.equal("\\x9b31m", (pretty.escape("\15531m"))) -- a bare 8-bit CSI
    assert.equal("\\xe0\\x80\\x9b", (pretty.escape("\224\128\155"))) -- overlong ESC
    assert.equal("\\xed\\xa0\\x80", (pretty.escape("\237\160\128"))) -- a surrogate
    assert.equal("ünïcode ✓ 日本 🦔", (pretty.escape("ünïcode ✓ 日本 🦔")))
    assert.equal(11, select(2, pretty.escape("ünïcode ✓ 日")))
    assert.equal(4, select(2, pretty.escape("a\nb")))
  end)

  it("tells printable text from text with controls", function()
    assert.is_true(pretty.is_printable("ssh login ✓"))
    assert.is_true(pretty.is_printable(""))
    assert.is_false(pretty.is_printable("a\nb"))
    assert.is_false(pretty.is_printable("\27[31mred"))
    assert.is_false(pretty.is_printable("\194\133"))
    assert.is_false(pretty.is_printable("\255"))
  end)

  it("aligns columns by characters, not bytes, and keeps each row on one line", function()
    local lines = pretty.columns({
      { "PORT", "NAME", "MESSAGE" },
      { "9931", "日本語", "first\nsecond" },
      { "9932", "ab", "\27[31mred" },
    })
    assert.same({
      "PORT  NAME  MESSAGE",
      "9931  日本語   first\\nsecond",
      "9932  ab    \\e[31mred",
    }, lines)
  end)
end)
