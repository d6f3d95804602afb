-- luacheck: std +busted
-- The REPL on a real terminal (tmux): line editing, continuation prompt, Ctrl-C on a line and on
-- a running task, Ctrl-D, and the history file.
local warren = require("warren")
local proc = require("helpers.proc")

local has_tmux = os.execute("command -v tmux >/dev/null 2>&1") == 0
local session = "warren-repl-spec-" .. tostring(os.time()) .. "-" .. tostring(math.random(1e6))

local function tmux(...)
  return proc.run({ "tmux", "-L", session, ... }, 5000)
end

local function screen()
  return tmux("capture-pane", "-p", "-t", session).stdout
end

-- Waits until the screen matches `pattern` (plain text), up to 5 s.
local function wait_for(text)
  for _ = 1, 100 do
    local s = screen()
    if s:find(text, 1, true) then return s end
    warren.sleep(50)
  end
  error("screen never showed " .. text .. ":\n" .. screen())
end

local function keys(...)
  tmux("send-keys", "-t", session, ...)
end

local describe_tty = has_tmux and describe or pending

describe_tty("warren repl on a terminal", function()
  local history = os.tmpname()

  setup(function()
    os.remove(history)
    local command = string.format("WARREN_HISTORY=%s %s repl; echo exited-$?; sleep 30", history, proc.warren_bin)
    tmux("new-session", "-d", "-s", session, "-x", "120", "-y", "40", command)
  end)

  teardown(function()
    proc.run({ "tmux", "-L", session, "kill-server" }, 5000)
    os.remove(history)
  end)

  it("evaluates a line and keeps the loop running while it waits", function()
    wait_for(">")
    keys("t = warren.timer(); n = 0; t:start(1, 5, function() n = n + 1 end)", "Enter")
    -- awaits inside the REPL, so a slow terminal cannot make the timer look stopped
    keys("n > 10 or (warren.sleep(300) and n > 10)", "Enter")
    wait_for("true")
  end)

  it("continues an incomplete chunk with a >> prompt", function()
    keys("function f(x)", "Enter")
    wait_for(">>")
    keys("return x * 3 end", "Enter")
    keys("f(14)", "Enter")
    wait_for("42")
  end)

  it("Ctrl-C drops the line being typed", function()
    keys("this is not lua")
    wait_for("this is not lua")
    keys("C-c")
    wait_for("^C")
    keys("1 + 1000", "Enter")
    local s = wait_for("1001")
    assert.is_nil(s:find("error:", 1, true))
  end)

  it("Ctrl-C cancels a running task", function()
    keys("warren.sleep(60000)", "Enter")
    warren.sleep(200)
    keys("C-c")
    wait_for("cancelled")
    keys("'after' .. 'cancel'", "Enter")
    wait_for('"aftercancel"')
  end)

  it("Ctrl-D exits and the history is saved", function()
    keys("C-d")
    wait_for("exited-0")
    local f = assert(io.open(history))
    local saved = f:read("*a")
    f:close()
    assert.is_truthy(saved:find("f(14)", 1, true), "history file:\n" .. saved)
  end)
end)
