-- Built-in load generators that need warren's own protocol (the rest is spec/bench/wr_loadgen).
--   warren bench handshake RELAY -k KEY [-d SECONDS] [-c CONCURRENCY]
local warren = require("warren")
local core = require("warren.core")
local keys = require("warren.keys")
local addr = require("warren.addr")
local uv = require("luv")

local M = {}

-- Opens and closes sessions as fast as possible from `concurrency` tasks for `seconds`;
-- each counts once its handshake completed (the relay confirmed the key). Returns a summary.
function M.handshakes(opts)
  local relay, err = addr.parse(opts.server or "", { host_required = true })
  if not relay then return nil, "relay: " .. err end
  local key, kerr = keys.resolve(opts)
  if not key then return nil, kerr end
  local done, failed, last_error = 0, 0, nil
  local deadline = uv.now() + (opts.seconds or 5) * 1000
  local started = uv.hrtime()
  local workers = {}
  for i = 1, opts.concurrency or 64 do
    workers[i] = warren.spawn(function()
      while uv.now() < deadline do
        local s, e = core.session_connect({ host = relay.host, port = relay.port, key = key })
        if s then
          done = done + 1
          s:close()
        else
          failed = failed + 1
          last_error = e
        end
      end
    end)
  end
  for _, w in ipairs(workers) do w:join() end
  local elapsed = (uv.hrtime() - started) / 1e9
  return { handshakes = done, failed = failed, seconds = elapsed, per_second = done / elapsed, error = last_error }
end

return M
