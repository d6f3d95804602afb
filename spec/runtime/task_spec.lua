-- luacheck: std +busted
-- Tasks and the await helper, inside the warren binary.
local warren = require("warren")
local core = require("warren.core")
local uv = require("luv")
local proc = require("helpers.proc")

describe("tasks", function()
  it("sleep yields and resumes with true", function()
    local t0 = uv.hrtime()
    assert.is_true(warren.sleep(30))
    assert.is_true((uv.hrtime() - t0) / 1e6 >= 25)
  end)

  it("await returns a result that arrived before the yield", function()
    local a, b, c = warren.await(function(resolve) resolve(1, nil, "three") end)
    assert.same({ 1, nil, "three" }, { a, b, c })
  end)

  it("await resumes from a luv callback", function()
    local timer = uv.new_timer()
    local value = warren.await(function(resolve)
      timer:start(5, 0, function() timer:close(); resolve("fired") end)
    end)
    assert.equal("fired", value)
  end)

  it("await times out and ignores a late resolve", function()
    local late
    local a, err = warren.await(function(resolve) late = resolve end, 20)
    assert.is_nil(a)
    assert.equal("timeout", err)
    late("too late") -- must be harmless
  end)

  it("join returns results, errors and cancellation", function()
    local ok = warren.spawn(function(x) warren.sleep(5); return x * 2, "two" end, 21)
    assert.same({ true, 42, "two" }, { ok:join() })
    local bad = warren.spawn(function() warren.sleep(5); error("boom") end)
    local r, err = bad:join()
    assert.is_nil(r)
    assert.matches("boom", err)
    assert.matches("stack traceback", err)
    local long = warren.spawn(function() warren.sleep(60000) end)
    assert.equal("waiting", long:status())
    assert.is_true(long:cancel())
    assert.equal("cancelled", long:status())
    assert.same({ nil, "cancelled" }, { long:join() })
  end)

  it("join can time out", function()
    local long = warren.spawn(function() warren.sleep(60000) end)
    assert.same({ nil, "timeout" }, { long:join(20) })
    long:cancel()
  end)

  it("raises a clear error when awaiting outside a task", function()
    local co = coroutine.create(function() return warren.sleep(1) end)
    local ok, err = coroutine.resume(co)
    assert.is_false(ok)
    assert.matches("warren.sleep: not in a task %(use warren.spawn%)", err)
  end)

  it("awaits inside pcall", function()
    local ok, v = pcall(function() warren.sleep(1); return "after" end)
    assert.is_true(ok)
    assert.equal("after", v)
  end)

  it("runs a luv timer and a warren.core timer on the same loop", function()
    local order = {}
    local luv_timer = uv.new_timer()
    local core_timer = warren.timer()
    local done = warren.await(function(resolve)
      luv_timer:start(10, 0, function() luv_timer:close(); order[#order + 1] = "luv" end)
      core_timer:start(20, 0, function() order[#order + 1] = "core"; resolve(true) end)
    end, 2000)
    assert.is_true(done)
    assert.same({ "luv", "core" }, order)
    core_timer:close()
    assert.same({ nil, "closed" }, { core_timer:start(1, 0, function() end) })
  end)

  it("a repeating core timer fires until stopped", function()
    local timer, n = warren.timer(), 0
    warren.await(function(resolve)
      timer:start(1, 2, function()
        n = n + 1
        if n == 3 then timer:stop(); resolve() end
      end)
    end, 2000)
    assert.equal(3, n)
    assert.is_false(timer:is_active())
    timer:close()
  end)

  it("logs an error in a luv callback with its traceback and keeps running", function()
    local log = require("warren.log")
    local records = {}
    local sink = log.add_sink(function(r) records[#records + 1] = r end)
    local before = core.lua_errors()
    local timer = uv.new_timer()
    timer:start(1, 0, function() timer:close(); error("failing callback") end)
    warren.sleep(30)
    log.remove_sink(sink)
    assert.equal(before + 1, core.lua_errors())
    local found
    for _, r in ipairs(records) do
      if r.msg:find("failing callback", 1, true) then found = r end
    end
    assert.is_not_nil(found)
    assert.equal("error", found.level)
    assert.matches("stack traceback", found.msg)
    assert.is_true(warren.sleep(1)) -- the loop still runs
  end)

  it("logs a failed task that nobody joins", function()
    local log = require("warren.log")
    local seen
    local sink = log.add_sink(function(r) if r.msg:find("unjoined failure", 1, true) then seen = r end end)
    warren.spawn(function() error("unjoined failure") end)
    log.remove_sink(sink)
    assert.is_not_nil(seen)
    assert.matches("task failed", seen.msg)
  end)
  -- A finished task's handle may be collected while its joiners are still being woken: the
  -- waking must not touch the task afterwards. Runs in a child so that a crash is a failure
  -- with its output rather than the end of this suite.
  it("survives garbage collection between a join and the next (regression: use after free)", function()
    local script = [[
      local warren = require("warren")
      local function churn(i)
        for _ = 1, 4 do collectgarbage() end
        local junk = {}
        for k = 1, 64 do junk[k] = string.rep(string.char(65 + k % 20), 40 + k) .. i end
      end
      warren.spawn(function()
        for i = 1, 1500 do
          -- one joiner, waiting before the finish; the handle is garbage once join returns
          assert(warren.spawn(function() warren.sleep(0); return i end):join() == true)
          churn(i)
          -- several joiners, waiting before the finish, and one joining after it
          local t = warren.spawn(function() warren.sleep(0); return i end)
          local joiners = {}
          for j = 1, 3 do joiners[j] = warren.spawn(function() local _, v = t:join(); churn(v); return v end) end
          t = nil -- luacheck: ignore
          for j = 1, 3 do assert(select(2, joiners[j]:join()) == i) end
          local done = warren.spawn(function() return i end)
          assert(select(2, done:join()) == i)
          churn(i)
        end
        io.stdout:write("survived\n")
      end)
    ]]
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write(script)
    f:close()
    local r = proc.warren({ "run", path }, { timeout = 60000 })
    os.remove(path)
    assert.equal("", r.stderr)
    assert.equal(0, r.code)
    assert.equal("survived\n", r.stdout)
  end)
end)
