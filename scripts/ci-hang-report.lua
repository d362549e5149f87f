-- CI hang report: what a hung test process (or its core) is doing, and why.
-- Diagnoses the target (the detectors of `taskdbg diagnose`), prints a report a
-- person reads, writes the tasks and findings as JSON, and exits 1 when there
-- are findings, 0 when there are none (2 when taskdbg could not do the job).
--
--   taskdbg run scripts/ci-hang-report.lua PID|CORE [--window 1s] [--json FILE]
--
--   --window D   how long a live process is watched (default 1s; 500ms, 2s, 1.5)
--   --json FILE  write {"target", "window_ms", "samples", "tasks", "findings"}
--                to FILE; "-" writes it to stdout and the report to stderr
--
-- In CI, on a timeout:  taskdbg run ci-hang-report.lua $PID --json hang.json
local T = taskdbg

local USAGE = "usage: taskdbg run ci-hang-report.lua PID|CORE [--window 1s] [--json FILE]"

-- "1s", "500ms", "1.5" (seconds) -> seconds
local function seconds(text)
  return T.parse_duration(text)
    or error(string.format("%s: a duration is 1s, 500ms or 1.5 (got %s)", USAGE, text), 0)
end

local window, json_to = 1, nil
local i = 1
while i <= #arg do
  local a = arg[i]
  if a == "--window" and arg[i + 1] then window = seconds(arg[i + 1]); i = i + 1
  elseif a == "--json" and arg[i + 1] then json_to = arg[i + 1]; i = i + 1
  else error(USAGE .. ": unexpected argument " .. a, 0) end
  i = i + 1
end

-- With the JSON on stdout, the report goes to stderr.
local report = json_to == "-" and io.stderr or io.stdout
local function say(fmt, ...) report:write(string.format(fmt, ...), "\n") end

local findings, used, samples = T.diagnose{ window = window }
local target = T.target()
local tasks = T.tasks()

if target.kind == "core" then
  say("hang report: core %s (%s, pid %d)", target.core, target.name or "?", target.pid)
else
  say("hang report: pid %d (%s), watched %.1f s, %d samples", target.pid, target.name or "?", window, samples)
end

-- The tasks, by id: state, where they are, what they wait on.
table.sort(tasks, function(a, b) return a.id < b.id end)
say("tasks: %d", #tasks)
for _, t in ipairs(tasks) do
  local w = t.waiting_on
  local waits = type(w) == "table" and string.format("  waits on %s %s", w.kind or "?", tostring(w.address or "")) or ""
  say("  %d %s %s at %s%s", t.id, t.state, t.root or t.name or "?", T.await_point(t), waits)
end
if T.no_runtime() then say("  (%s)", T.no_runtime()) end

say("findings: %d", #findings)
for _, f in ipairs(findings) do
  say("  [%s] %s", f.kind, f.summary)
  for _, line in ipairs(f.evidence or {}) do say("    %s", line) end
  if f.fix then say("    fix: %s", f.fix) end
end

if json_to then
  local doc = { target = target, window_ms = target.kind == "core" and 0 or window * 1000,
                samples = samples, tasks = tasks, findings = findings }
  if json_to == "-" then
    io.stdout:write(T.json(doc), "\n")
  else
    assert(T.write_json(json_to, doc))
    say("json: %s", json_to)
  end
end

return #findings > 0 and 1 or 0
