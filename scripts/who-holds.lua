-- Who holds it: the tasks awaiting a resource (a lock, a semaphore, a channel,
-- a JoinHandle...) and the tasks that hold it. With PATTERN, the resources
-- whose kind or address contains it; without, every resource some task awaits.
-- Exit status 0 when something was listed, 1 when nothing matched.
--
--   taskdbg run scripts/who-holds.lua PID|CORE [PATTERN]
--   taskdbg run scripts/who-holds.lua 1234 Mutex
--   taskdbg run scripts/who-holds.lua core.1234 0x55d0c0a1e2c0
local T = taskdbg
local pattern = arg[1]

local function matches(r)
  if not pattern then return #r.waiters > 0 end
  return (r.kind and r.kind:find(pattern, 1, true)) or tostring(r.address or ""):find(pattern, 1, true)
end

local function by_task(a, b) return (a.task or 0) < (b.task or 0) end

local listed = 0
for _, r in ipairs(T.resources()) do
  if matches(r) then
    listed = listed + 1
    print(string.format("%s %s", r.kind or "?", tostring(r.address or r.key)))
    table.sort(r.holders, by_task)
    table.sort(r.waiters, by_task)
    if #r.holders == 0 then print("  held by: no task known") end
    for _, h in ipairs(r.holders) do
      print(string.format("  held by: task %d %s (%s%s)", h.task, h.name or "?", h.as or "?",
        h.type and (": " .. h.type) or ""))
    end
    if #r.waiters == 0 then print("  awaited by: no task") end
    for _, w in ipairs(r.waiters) do
      print(string.format("  awaited by: task %d %s at %s", w.task, w.name or "?", w.at))
    end
  end
end
if listed == 0 then
  print(pattern and string.format("no resource matches %s", pattern) or "no task awaits a resource")
  return 1
end
return 0
