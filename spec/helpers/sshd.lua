-- A throwaway sshd on 127.0.0.1 with its own host key and one authorized user key, for specs
-- that carry real ssh sessions through tunnels.
local uv = require("luv")
local proc = require("helpers.proc")
local net = require("helpers.net")

local M = {}

-- Returns the server ({port, stop(), ssh(port, command)}) or nil, why it cannot start here.
function M.start()
  local dir = os.tmpname()
  os.remove(dir)
  assert(uv.fs_mkdir(dir, tonumber("700", 8)))
  for _, name in ipairs({ "host_key", "user_key" }) do
    local r = proc.run({ "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", dir .. "/" .. name })
    assert(r.code == 0, r.stderr)
  end
  local f = assert(io.open(dir .. "/user_key.pub"))
  local pub = f:read("*a")
  f:close()
  f = assert(io.open(dir .. "/authorized_keys", "w"))
  f:write(pub)
  f:close()
  local port = net.free_port()
  local cfg = assert(io.open(dir .. "/sshd_config", "w"))
  cfg:write(table.concat({ "Port " .. port, "ListenAddress 127.0.0.1", "HostKey " .. dir .. "/host_key",
    "AuthorizedKeysFile " .. dir .. "/authorized_keys", "PidFile " .. dir .. "/sshd.pid", "StrictModes no",
    "UsePAM no", "PasswordAuthentication no", "KbdInteractiveAuthentication no", "PubkeyAuthentication yes",
    "PermitRootLogin prohibit-password", "" }, "\n"))
  cfg:close()
  local sshd = proc.start({ "/usr/sbin/sshd", "-D", "-e", "-f", dir .. "/sshd_config" })
  if not net.wait_port(port, 5000) then
    sshd:kill()
    local out = sshd:wait(5000)
    proc.run({ "rm", "-rf", dir })
    return nil, "sshd cannot start here: " .. (out and out.stderr or "?")
  end
  local user = proc.run({ "id", "-un" }).stdout:match("%S+")
  return {
    port = port,
    -- Runs `command` over ssh to 127.0.0.1:via_port; returns proc.run's result.
    ssh = function(via_port, command)
      return proc.run({ "ssh", "-p", tostring(via_port), "-i", dir .. "/user_key", "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
        user .. "@127.0.0.1", command }, 30000)
    end,
    stop = function()
      sshd:kill()
      sshd:wait(5000)
      proc.run({ "rm", "-rf", dir })
    end,
  }
end

return M
