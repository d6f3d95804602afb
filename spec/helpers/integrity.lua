-- Many streams through a tunnel, byte-exact both ways: drives spec/helpers/integrity.js (each
-- stream uploads and downloads random bytes, half-closes, and compares SHA-256 digests).
local proc = require("helpers.proc")

local M = {}

M.js = proc.source_dir .. "/spec/helpers/integrity.js"
M.streams, M.max_bytes = 100, 131072

-- Runs integrity clients side by side, each {label, target = "HOST:PORT", via = {"socks5" |
-- "connect", "HOST:PORT"}, streams = N, max = BYTES}, started with spawn (the spec's, so that its
-- teardown knows them), and asserts that every stream of each was byte-exact.
function M.run(spawn, runs)
  local clients = {}
  for i, run in ipairs(runs) do
    local spec = { "node", M.js, "client", run.target, tostring(run.streams or M.streams),
      tostring(run.max or M.max_bytes) }
    if run.via then
      spec[#spec + 1] = run.via[1]
      spec[#spec + 1] = run.via[2]
    end
    clients[i] = spawn(spec)
  end
  for i, child in ipairs(clients) do
    local r = child:wait(70000)
    if not r then
      child:kill("sigkill")
      error(runs[i].label .. ": the integrity client did not finish")
    end
    -- (a helper module sees Lua's assert, not busted's)
    if r.code ~= 0 then error(runs[i].label .. ": exit " .. tostring(r.code) .. "\n" .. r.stdout .. r.stderr) end
    if not r.stdout:match("^ok " .. (runs[i].streams or M.streams) .. " streams %d+ up %d+ down") then
      error(runs[i].label .. ": " .. r.stdout)
    end
  end
end

return M
