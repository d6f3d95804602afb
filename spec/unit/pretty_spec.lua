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
end)
