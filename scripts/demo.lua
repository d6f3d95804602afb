-- The main job on loopback, in one process: a relay, a client that connects to it with a fresh
-- key, a tunnel (like ssh -L) through it to a small echo service, and traffic through the tunnel.
--   warren run scripts/demo.lua [MESSAGES]
local warren = require("warren")
local uv = require("luv")

local messages = tonumber(arg and arg[1]) or 5

-- The service behind the relay: a loopback echo server.
local service = assert(uv.new_tcp())
assert(service:bind("127.0.0.1", 0))
service:listen(64, function()
  local peer = uv.new_tcp()
  service:accept(peer)
  peer:read_start(function(_, data)
    if data then peer:write(data) else peer:close() end
  end)
end)
local service_port = service:getsockname().port

local key = require("warren.keys").generate()
local relay = assert(warren.relay({ listen = "127.0.0.1:0", key = key }))
local client = assert(warren.client({ server = "127.0.0.1:" .. relay:port(), key = key }))
assert(client:connect())
local tunnel = assert(client:forward({ listen = "127.0.0.1:0", target = "127.0.0.1:" .. service_port }))

-- A user of the tunnel: connect to its local end and exchange messages.
local conn = uv.new_tcp()
assert(warren.await(function(resolve)
  conn:connect("127.0.0.1", tunnel:port(), function(err) resolve(not err, err) end)
end, 5000))
local received, waiting = "", nil
conn:read_start(function(_, data)
  if data then received = received .. data end
  if waiting then waiting(true) end
end)
for i = 1, messages do
  local message = string.format("message %d through the tunnel", i)
  local t0 = uv.hrtime()
  conn:write(message)
  while #received < #message do
    assert(warren.await(function(resolve) waiting = resolve end, 5000), "echo timed out")
  end
  print(string.format("%-32s round trip %6.1f us", received, (uv.hrtime() - t0) / 1e3))
  received = ""
end
conn:close()
warren.sleep(50) -- let the tunnelled connection finish so the stats include it

local s = relay:stats()
print(string.format("relay: %d session(s), %d stream(s), %d bytes up, %d bytes down",
  s.sessions_total, s.streams_total, s.bytes_up, s.bytes_down))
client:close()
relay:close()
service:close()
