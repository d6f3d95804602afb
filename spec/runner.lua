-- Runs busted inside the warren binary. The whole run is one task, so specs may await
-- (warren.sleep, child processes, sockets) directly.
package.path = (os.getenv("WARREN_SOURCE_DIR") or ".") .. "/spec/?.lua;" .. package.path
-- On failures busted ends with error() under Lua 5.1 to get a non-zero status: make it an exit.
local ok = pcall(require("busted.runner"), { standalone = false })
require("helpers.proc").kill_all()
if not ok then os.exit(1) end
