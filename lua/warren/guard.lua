-- Hooks are the operator's code on the one loop every connection shares: a hook that loops must
-- not stop the process. A guarded hook runs interpreted (LuaJIT's count hook never fires inside
-- compiled code, so the function and the functions it defines are kept out of the JIT) under an
-- instruction budget per call; past it the call raises, and the hook denies and is logged like
-- any hook that raises. Only the hook's own instructions count: time it spends awaiting does not.
local M = {}

M.budget = 50000000 -- instructions per call: a fraction of a second interpreted
local STEP = 100000
local guarded = setmetatable({}, { __mode = "k" }) -- wrappers made here: not wrapped twice

local function restore(hook, mask, count, ok, ...)
  debug.sethook(hook, mask, count)
  if not ok then error(..., 0) end
  return ...
end

local function traceback(err)
  return debug.traceback(tostring(err), 2)
end

-- fn guarded (fn itself when it is not a function); name is the hook's, for the error.
function M.wrap(name, fn)
  if type(fn) ~= "function" or guarded[fn] then return fn end
  jit.off(fn, true)
  local function wrapper(...)
    local hook, mask, count = debug.gethook()
    local left = M.budget
    debug.sethook(function()
      left = left - STEP
      if left <= 0 then
        debug.sethook(hook, mask, count)
        error(string.format("%s hook ran past its budget of %d instructions (a loop?)", name, M.budget))
      end
    end, "", STEP)
    return restore(hook, mask, count, xpcall(fn, traceback, ...))
  end
  guarded[wrapper] = true
  return wrapper
end

-- A file of hooks (or a declared script): every function it defines stays out of the JIT, so a
-- helper a hook calls is under the budget too. Returns chunk.
function M.interpreted(chunk)
  jit.off(chunk, true)
  return chunk
end

-- A copy of a hooks table with every function guarded.
function M.hooks(hooks)
  if hooks == nil then return nil end
  local copy = {}
  for name, fn in pairs(hooks) do copy[name] = M.wrap(name, fn) end
  return copy
end

return M
