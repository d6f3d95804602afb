-- A self-contained demo on loopback: an echo service, and a client that sends a few messages
-- through it and reports round-trip times. Runs to completion.
--   warren run scripts/demo.lua [PORT]
local warren = require("warren")
local uv = require("luv")
local log = warren.log

local port = tonumber(arg and arg[1]) or 0

local server = assert(uv.new_tcp())
assert(server:bind("127.0.0.1", port))
server:listen(64, function(err)
  if err then return log.error("accept: %s", err) end
  local peer = uv.new_tcp()
  server:accept(peer)
  peer:read_start(function(read_err, data)
    if data then peer:write(data) else peer:close() end
  end)
end)
port = server:getsockname().port
log.info("echo service listening on 127.0.0.1:%d", port)

local client = uv.new_tcp()
local ok, err = warren.await(function(resolve)
  client:connect("127.0.0.1", port, function(e) resolve(not e, e) end)
end, 5000)
assert(ok, err)

local received = ""
local waiting
client:read_start(function(_, data)
  if data then received = received .. data end
  if waiting then waiting() end
end)

for i = 1, 5 do
  local message = string.format("hello %d from warren", i)
  local t0 = uv.hrtime()
  client:write(message)
  while #received < #message do
    warren.await(function(resolve) waiting = resolve end, 5000)
  end
  waiting = nil
  print(string.format("%-20s echoed in %.1f us", received, (uv.hrtime() - t0) / 1e3))
  received = ""
end
client:close()
server:close()
