-- luacheck settings for the Lua library, scripts, examples and specs (run by .ci/test).
std = "luajit"
max_line_length = 120
-- Callbacks keep the full signature of what calls them (luv's (err, data), busted's self).
unused_args = false
files["spec"] = { std = "+busted" }
