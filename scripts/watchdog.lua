-- Watchdog: polls a running service and, when the same tasks stay stuck
-- (unchanged: same state, same await points) across several polls in a row,
-- writes a report and a core, then exits 1. Exits 0 after the polls with
-- nothing stuck; 2 when taskdbg could not do the job (the service exited).
--
--   taskdbg run scripts/watchdog.lua PID [--every 2s] [--polls N] [--stuck K] [--out DIR] [--all]
--
--   --every D   time between polls (default 2s; 500ms, 1.5)
--   --polls N   how many polls before giving up watching (default 30; 0: forever)
--   --stuck K   stuck = unchanged across K polls in a row (default 3)
--   --out DIR   where the report and the core go (default .):
--               DIR/report-PID-TIME.txt, DIR/core-PID-TIME
--   --all       count every unchanged task; by default a task waiting for work
--               (a socket, a timer, a signal, a channel's or watch's receiver)
--               is idle, not stuck
--
-- The service runs between polls: each poll stops it for a moment (a snapshot).
local T = taskdbg

local USAGE = "usage: taskdbg run watchdog.lua PID [--every 2s] [--polls N] [--stuck K] [--out DIR] [--all]"

local function seconds(text)
  return T.parse_duration(text)
    or error(string.format("%s: a duration is 2s, 500ms or 1.5 (got %s)", USAGE, text), 0)
end

local function count(text, least)
  local n = math.tointeger(tonumber(text))
  if not n or n < least then error(string.format("%s: %s is not a whole number >= %d", USAGE, text, least), 0) end
  return n
end

local every, polls, stuck_after, out, all = 2, 30, 3, ".", false
local i = 1
while i <= #arg do
  local a, v = arg[i], arg[i + 1]
  if a == "--every" and v then every = seconds(v); i = i + 1
  elseif a == "--polls" and v then polls = count(v, 0); i = i + 1
  elseif a == "--stuck" and v then stuck_after = count(v, 2); i = i + 1
  elseif a == "--out" and v then out = v; i = i + 1
  elseif a == "--all" then all = true
  else error(USAGE .. ": unexpected argument " .. a, 0) end
  i = i + 1
end

local target = T.target()
if target.kind ~= "live" then
  error("watchdog.lua polls a running process: " .. (target.core or "TARGET") .. " is a core (use ci-hang-report.lua)", 0)
end

-- What a service waits for when it has nothing to do (by the plugin's classes).
local classes = T.runtime_info().resources or {}
local IDLE = { socket = true, timer = true, signal = true, watch = true, broadcast = true, channel = "rx" }
local function waits_for_work(t)
  local w = t.waiting_on
  if t.state ~= "idle" or type(w) ~= "table" then return false end
  local idle = IDLE[classes[w.kind] or w.kind]
  return idle == true or (idle ~= nil and idle == w.mode)
end

local function stuck_now()
  local set, span = T.stuck(stuck_after)
  local list = {}
  for id in pairs(set) do
    local t = T.task(id)
    if t and (all or not waits_for_work(t)) then list[#list + 1] = t end
  end
  table.sort(list, function(a, b) return a.id < b.id end)
  return list, span
end

local function ids(list)
  local s = {}
  for _, t in ipairs(list) do s[#s + 1] = tostring(t.id) end
  return table.concat(s, ", ")
end

local function write_report(path, stuck, span)
  local f = assert(io.open(path, "w"))
  local function w(fmt, ...) f:write(string.format(fmt, ...), "\n") end
  w("watchdog report: pid %d (%s) at %s", target.pid, target.name or "?", os.date("!%Y-%m-%d %H:%M:%SZ"))
  w("stuck tasks (unchanged across %d polls, %.1f s):", stuck_after, span)
  local holders = {}
  for _, r in ipairs(T.resources()) do holders[r.key] = r.holders end
  for _, t in ipairs(stuck) do
    local wo = t.waiting_on
    w("  task %d %s %s at %s", t.id, t.state, t.root or t.name or "?", T.await_point(t))
    if type(wo) == "table" then
      w("    waits on %s %s", wo.kind or "?", tostring(wo.address or ""))
      for _, h in ipairs(holders[wo.key] or {}) do w("    held by task %d %s", h.task, h.name or "?") end
    end
  end
  local findings = T.diagnose{ window = math.min(every, 1) }
  w("findings: %d", #findings)
  for _, fd in ipairs(findings) do
    w("  [%s] %s", fd.kind, fd.summary)
    for _, line in ipairs(fd.evidence or {}) do w("    %s", line) end
    if fd.fix then w("    fix: %s", fd.fix) end
  end
  return f, #findings
end

print(string.format("watchdog: pid %d (%s), a poll every %g s, stuck after %d polls", target.pid,
  target.name or "?", every, stuck_after))
local poll = 1
while true do
  local stuck, span = stuck_now()
  print(string.format("poll %d: %d tasks, %d stuck%s", poll, #T.tasks(), #stuck,
    #stuck > 0 and (": " .. ids(stuck)) or ""))
  T.flush()
  if #stuck > 0 then
    local stamp = os.date("!%Y%m%dT%H%M%SZ")
    local report = string.format("%s/report-%d-%s.txt", out, target.pid, stamp)
    local core = string.format("%s/core-%d-%s", out, target.pid, stamp)
    local f, nfindings = write_report(report, stuck, span)
    local ok, dumped = pcall(T.dump, core)
    if ok then
      f:write(string.format("core: %s (%d bytes)\n", dumped.path or core, dumped.bytes or 0))
    else
      f:write(string.format("core: not written: %s\n", tostring(dumped)))
    end
    f:close()
    print(string.format("report: %s (%d findings)", report, nfindings))
    print(ok and ("core: " .. core) or ("core: not written: " .. tostring(dumped)))
    return 1
  end
  if polls > 0 and poll >= polls then break end
  poll = poll + 1
  T.sleep(every)
  T.refresh()
end
print(string.format("nothing stuck in %d polls", poll))
return 0
