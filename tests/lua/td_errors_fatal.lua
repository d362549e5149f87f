-- Budget and out-of-memory end the call even when the script catches them
-- (docs/plugins.md, "Errors"):
--   taskdbg run tests/lua/td_errors_fatal.lua TARGET budget|oom|try-budget
-- prints the kind of the error its pcall caught, then returns normally; the
-- run must fail all the same, with the budget's or memory's message. A script
-- has no time budget (docs/lua-api.md): the budget cases loop until Ctrl-C,
-- which ends a call as a budget does; they say "looping" first.
local runaway = {
  budget = function()
    io.stdout:write("looping\n")
    io.stdout:flush()
    while true do end
  end,
  oom = function()
    local t = {}
    for i = 1, 1e5 do t[i] = string.rep("x", 1e6) .. i end
  end,
}
local what = args[1]
local ok, err
if what == "try-budget" then
  ok, err = pcall(td.try, runaway.budget)   -- td.try does not turn a budget error into nil, err
else
  ok, err = pcall(runaway[what])
end
print(string.format("caught kind=%s is_error=%s", td.is_error(err) and err.kind or type(err), td.is_error(err)))
return { survived = true }
