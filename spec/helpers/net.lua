-- Loopback servers and clients for specs, on the spec runner's own loop.
local warren = require("warren")
local uv = require("luv")

local M = {}

-- A TCP server on host (default 127.0.0.1) at a free port that hands each accepted connection
-- to on_peer(peer). Returns server, port, or nil, err.
function M.serve(on_peer, host)
  local server = uv.new_tcp()
  local ok, err = server:bind(host or "127.0.0.1", 0)
  if not ok then
    server:close()
    return nil, err
  end
  server:listen(256, function()
    local peer = uv.new_tcp()
    server:accept(peer)
    on_peer(peer)
  end)
  return server, server:getsockname().port
end

-- An echo server on 127.0.0.1. Returns server, port.
function M.echo_server()
  return assert(M.serve(function(peer)
    peer:read_start(function(_, data)
      if data then
        peer:write(data)
      else
        peer:shutdown(function() peer:close() end)
      end
    end)
  end))
end

-- A server that reads until EOF, then answers with the byte count and closes: the answer can
-- only arrive if a half-close travelled end to end.
function M.count_server()
  return assert(M.serve(function(peer)
    local n = 0
    peer:read_start(function(_, data)
      if data then
        n = n + #data
      else
        peer:write("received " .. n .. " bytes")
        peer:shutdown(function() peer:close() end)
      end
    end)
  end))
end

-- An HTTP/1.1 origin that answers every request with `body` (default "hello PATH\n") and
-- closes; `seen` keeps the request heads it received. Returns server, port, seen, or nil, err.
function M.http_server(body, host)
  local seen = {}
  local server, port = M.serve(function(peer)
    local buf = ""
    peer:read_start(function(_, data)
      if not data then return peer:close() end
      buf = buf .. data
      local stop_at = buf:find("\r\n\r\n", 1, true)
      if not stop_at then return end
      local head = buf:sub(1, stop_at + 3)
      seen[#seen + 1] = head
      local answer = body or ("hello " .. head:match("^%S+ (%S+)") .. "\n")
      peer:read_stop()
      peer:write("HTTP/1.1 200 OK\r\nContent-Length: " .. #answer .. "\r\nConnection: close\r\n\r\n" .. answer)
      peer:shutdown(function() peer:close() end)
    end)
  end, host)
  if not server then return nil, port end
  return server, port, seen
end

-- Connects to 127.0.0.1:port, sends `data`, optionally half-closes, and reads until EOF or
-- `want` bytes arrived. Returns the bytes read, or nil, err.
function M.exchange(port, data, opts)
  opts = opts or {}
  local client = uv.new_tcp()
  local ok, err = warren.await(function(resolve)
    client:connect("127.0.0.1", port, function(e) resolve(not e, e) end)
  end, opts.timeout or 5000)
  if not ok then client:close(); return nil, err or "connect timeout" end
  local parts, got = {}, 0
  local result, rerr = warren.await(function(resolve)
    client:read_start(function(e, chunk)
      if e then return resolve(nil, e) end
      if not chunk then return resolve(table.concat(parts)) end
      parts[#parts + 1] = chunk
      got = got + #chunk
      if opts.want and got >= opts.want then resolve(table.concat(parts)) end
    end)
    if data then client:write(data) end
    if opts.half_close then client:shutdown() end
  end, opts.timeout or 10000)
  client:close()
  return result, rerr
end

-- Waits until something accepts connections on 127.0.0.1:port.
function M.wait_port(port, timeout_ms)
  local deadline = uv.now() + (timeout_ms or 5000)
  while uv.now() < deadline do
    local c = uv.new_tcp()
    local ok = warren.await(function(resolve)
      c:connect("127.0.0.1", port, function(e) resolve(not e) end)
    end, 1000)
    c:close()
    if ok then return true end
    warren.sleep(50)
  end
  return false
end

-- Ports handed to processes that bind them later come from below the kernel's
-- ephemeral range, so outgoing connections of parallel tests cannot take them
-- in the meantime.
local ephemeral_low = 32768
do
  local f = io.open("/proc/sys/net/ipv4/ip_local_port_range")
  if f then
    ephemeral_low = tonumber(f:read("*n")) or ephemeral_low
    f:close()
  end
end
local first_port = math.max(1024, math.min(20000, ephemeral_low - 4096))
math.randomseed(uv.os_getpid() * 1000 + uv.hrtime() % 1000)
-- ctest gives each runtime suite a slot of its own (WARREN_PORT_SLOT, 0-31), so suites running
-- side by side never draw the same port; without one a suite draws from the whole range.
local last_port = ephemeral_low - 1
do
  local slot = tonumber(os.getenv("WARREN_PORT_SLOT") or "")
  if slot then
    local width = math.floor((ephemeral_low - first_port) / 32)
    first_port = first_port + (slot % 32) * width
    last_port = first_port + width - 1
  end
end

local function bindable(port)
  local s = uv.new_tcp()
  local ok = s:bind("127.0.0.1", port)
  s:close()
  return ok ~= nil
end

-- The next port to try: ranges are handed out in turn through the slot, so a suite does not get
-- back a port an earlier test of its own may still be letting go of.
local cursor = math.random(first_port, last_port)

-- N consecutive ports that were free a moment ago. Returns first, last.
function M.free_range(n)
  for _ = 1, 200 do
    if cursor + n - 1 > last_port then cursor = first_port end
    local base = cursor
    cursor = cursor + n
    local ok = true
    for p = base, base + n - 1 do
      if not bindable(p) then ok = false break end
    end
    if ok then return base, base + n - 1 end
  end
  error("no free range of " .. n .. " ports")
end

-- A port that was free a moment ago.
function M.free_port()
  return (M.free_range(1))
end

return M
