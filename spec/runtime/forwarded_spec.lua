-- luacheck: std +busted
-- A relay behind a real nginx that proxies WebSocket: the tunnel works through it, nginx's other
-- paths stay nginx's, and with --trust-front the relay's hooks see the user's address from
-- X-Forwarded-For instead of nginx's (nginx connects from 127.0.0.3, its users from 127.0.0.1).
local warren = require("warren")
local uv = require("luv")
local proc = require("helpers.proc")
local net = require("helpers.net")

local NGINX = "/usr/sbin/nginx"

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

-- nginx in the foreground on port, /tunnel proxied to the relay from 127.0.0.3.
local function start_nginx(port, relay_port)
  local dir = os.tmpname()
  os.remove(dir)
  assert(uv.fs_mkdir(dir, tonumber("700", 8)))
  write(dir .. "/index.html", "nginx's own page\n")
  write(dir .. "/nginx.conf", string.format([[
daemon off;
master_process off;
worker_processes 1;
pid %s/nginx.pid;
error_log %s/error.log;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path %s; proxy_temp_path %s; fastcgi_temp_path %s;
  uwsgi_temp_path %s; scgi_temp_path %s;
  server {
    listen 127.0.0.1:%d;
    root %s;
    location /tunnel {
      proxy_pass http://127.0.0.1:%d;
      proxy_bind 127.0.0.3;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection "upgrade";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }
  }
}
]], dir, dir, dir, dir, dir, dir, dir, port, dir, relay_port))
  local child = proc.start({ NGINX, "-p", dir, "-c", dir .. "/nginx.conf" })
  assert(net.wait_port(port), "nginx did not start: " .. select(2, child:output()))
  return child
end

describe("a relay behind nginx", function()
  if not uv.fs_stat(NGINX) then
    it("needs nginx", function() pending("nginx is not installed (Debian nginx-light)") end)
    return
  end

  local function through_nginx(trusted)
    local k = require("warren.keys").generate()
    local peers = {}
    local relay = assert(warren.relay({ listen = "127.0.0.1:0", key = k, trusted_fronts = trusted,
      on_open = function(_, _, info)
        peers[#peers + 1] = info.peer
        return true
      end }))
    local nginx_port = net.free_port()
    local nginx = start_nginx(nginx_port, relay:port())
    local echo, echo_port = net.echo_server()
    local client = assert(warren.client({ server = "ws://127.0.0.1:" .. nginx_port .. "/tunnel", key = k }))
    assert(client:connect())
    local fwd = assert(client:forward({ listen = "127.0.0.1:0", target = "127.0.0.1:" .. echo_port }))
    local blob = string.rep("through nginx ", 20000)
    assert.equal(blob, net.exchange(fwd:port(), blob, { want = #blob, timeout = 10000 }))
    local page = proc.run({ "curl", "-s", "-m", "5", "http://127.0.0.1:" .. nginx_port .. "/" })
    local stats = relay:stats()
    client:close()
    relay:close()
    echo:close()
    nginx:kill()
    nginx:wait(5000)
    return peers, page.stdout, stats
  end

  it("carries the tunnel, leaves nginx's pages alone, and hooks see nginx without --trust-front", function()
    local peers, page, stats = through_nginx(nil)
    assert.equal("nginx's own page\n", page)
    assert.equal(1, stats.front_websocket)
    assert.equal(0, stats.front_forwarded)
    assert.matches("^127%.0%.0%.3:%d+$", peers[1])
  end)

  it("shows hooks the user's address from a trusted front's X-Forwarded-For", function()
    local peers, _, stats = through_nginx({ "127.0.0.3" })
    assert.equal(1, stats.front_forwarded)
    assert.equal("127.0.0.1:0", peers[1])
  end)

  it("refuses a trusted front that is not an address", function()
    local relay, err = warren.relay({ listen = "127.0.0.1:0", key = require("warren.keys").generate(),
      trusted_fronts = { "nginx.local" } })
    assert.is_nil(relay)
    assert.equal("trusted front nginx.local: not an address or ADDR/BITS", err)
  end)
end)

describe("--trust-front on the command line", function()
  it("is refused with the reason when it is not an address", function()
    local r = proc.warren({ "serve", "127.0.0.1:" .. net.free_port(), "-k", proc.key(),
      "--trust-front", "10.0.0.0/40" })
    assert.equal(1, r.code)
    assert.matches("trusted front 10%.0%.0%.0/40: not an address", r.stderr)
  end)
end)
