-- Tasks read top to bottom: three workers sleep concurrently on one loop, a luv timer ticks
-- beside them, and the script waits for all of them.
--   warren run examples/tasks.lua
local warren = require("warren")
local uv = require("luv")

local ticks = 0
local ticker = uv.new_timer()
ticker:start(0, 50, function() ticks = ticks + 1 end)

local workers = {}
for i = 1, 3 do
  workers[i] = warren.spawn(function()
    warren.sleep(100 * i)
    return string.format("worker %d done after %d ms", i, 100 * i)
  end)
end
for _, worker in ipairs(workers) do print(select(2, worker:join())) end
ticker:close()
print(string.format("the timer ticked %d times meanwhile", ticks))
