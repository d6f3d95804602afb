-- The HTTP proxy a client reaches its relay through: --proxy, or else the environment's, for the
-- carriers meant to cross web infrastructure: HTTP_PROXY / http_proxy for the http carrier (which
-- sends the proxy its requests, no CONNECT), HTTPS_PROXY / https_proxy for tls, ws, wss and https
-- (CONNECT); the raw carrier never takes one from the environment, and hosts NO_PROXY / no_proxy
-- lists go direct.
local addr = require("warren.addr")

local M = {}

local function unescape(s)
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

-- "http://[USER:PASS@]HOST:PORT[/]" (the scheme may be left out) -> {host, port, auth} or nil, err.
function M.parse(url)
  local scheme, rest = url:match("^(%a[%w+.-]*)://(.*)$")
  if scheme and scheme:lower() ~= "http" then
    return nil, string.format("proxy %s: only http:// proxies are supported", url)
  end
  rest = (rest or url):gsub("/$", "")
  local userinfo, hostport = rest:match("^(.*)@([^@]*)$")
  local a, err = addr.parse(hostport or rest, { host_required = true, what = "proxy" })
  if not a then return nil, err end
  if userinfo and not userinfo:find(":", 1, true) then
    return nil, string.format("proxy %s: credentials must be USER:PASS", url)
  end
  return { host = a.host, port = a.port, auth = userinfo and unescape(userinfo) or nil }
end

-- Whether host is listed in a NO_PROXY value: "*", a name (itself and its subdomains; a leading
-- dot is the same), or an address.
function M.bypassed(host, no_proxy)
  host = host:lower()
  for entry in (no_proxy or ""):gmatch("[^,%s]+") do
    entry = entry:lower():gsub("^%.", ""):gsub(":%d+$", ""):gsub("^%[(.*)%]$", "%1")
    if entry == "*" or host == entry or host:sub(-#entry - 1) == "." .. entry then return true end
  end
  return false
end

-- The proxy for a connection to the relay at host with carrier, or nil; nil, err for a bad URL.
-- opts.proxy is --proxy; getenv is os.getenv (a parameter, for tests).
function M.for_relay(host, carrier, opts, getenv)
  getenv = getenv or os.getenv
  local url, from = opts.proxy, "--proxy"
  if not url and carrier == "http" then
    url, from = getenv("HTTP_PROXY") or getenv("http_proxy"), "HTTP_PROXY"
  elseif not url and carrier ~= "tcp" then
    url, from = getenv("HTTPS_PROXY") or getenv("https_proxy"), "HTTPS_PROXY"
  end
  if from ~= "--proxy" then
    if url == "" then url = nil end
    if url and M.bypassed(host, getenv("NO_PROXY") or getenv("no_proxy")) then url = nil end
  end
  if not url then return nil end
  local p, err = M.parse(url)
  if not p then return nil, from .. ": " .. err end
  return p
end

return M
