-- The commands of an interactive session (`taskdbg attach`, `taskdbg core`),
-- written on the public API of the taskdbg table (api.lua, docs/lua-api.md):
-- what a script can do, a command does, and the other way round. The C side
-- (src/interactive/repl.c) reads lines, completes, pages and calls run().
local T = taskdbg
local C = {}
local ENV = _ENV   -- the user environment: `lua` and `source` run in it
local EMPTY = {}

local function out(...) T.write(...) end
local function outf(fmt, ...) T.write(string.format(fmt, ...)) end

-- Colour on a terminal (repl.c sets T.color: a terminal and no NO_COLOR).
local function paint(code, s)
  if not T.color then return s end
  return "\27[" .. code .. "m" .. s .. "\27[0m"
end
local function bold(s) return paint("1", s) end
local function dim(s) return paint("2", s) end
local STATE_COLOR = { running = "32", notified = "33", idle = "0", complete = "2", cancelled = "2" }
local function state(s) return paint(STATE_COLOR[s] or "0", s) end

local function usage_error(msg)
  error(msg, 0)
end

-- "1s", "500ms", "2" (seconds) -> seconds, or nil: as every command reads them
local function seconds(text) return text and T.parse_duration(text) end

local function words(line)
  local w = {}
  for x in line:gmatch("%S+") do w[#w + 1] = x end
  return w
end

-- ---- threads and stacks ----

local function frame_line(i, f)
  local where = f.file and string.format(" at %s:%s", f.file, f.line or 0) or ""
  local name = f["function"] or "??"
  return string.format("  #%-3d %s%s%s", i, f.inlined and "(inlined) " or "", name, dim(where))
end

local function thread_header(th)
  local extra = {}
  if th.syscall and th.syscall ~= td.null then extra[#extra + 1] = "in " .. th.syscall end
  if th.task and th.task ~= td.null then extra[#extra + 1] = "polling task " .. th.task end
  return string.format("thread %d %s (%s, %s)%s", th.tid, bold(th.name ~= td.null and th.name or "?"),
    th.role, th.state or "?", #extra > 0 and ": " .. table.concat(extra, ", ") or "")
end

local commands, order = {}, {}
local function command(name, spec)
  spec.name = name
  commands[name] = spec
  order[#order + 1] = name
  for _, a in ipairs(spec.aliases or EMPTY) do commands[a] = spec end
end

command("threads", {
  usage = "threads",
  help = "List the threads: id, name, role (worker, blocking, main, other), state,\n" ..
         "the system call each sits in and the task each polls.",
  run = function()
    outf("%-8s %-16s %-9s %-5s %-16s %s\n", "TID", "NAME", "ROLE", "STATE", "SYSCALL", "TASK")
    for _, th in ipairs(T.threads()) do
      outf("%-8d %-16s %-9s %-5s %-16s %s\n", th.tid, th.name ~= td.null and th.name or "?", th.role,
        th.state or "?", th.syscall ~= td.null and th.syscall or "-", th.task ~= td.null and th.task or "-")
    end
  end,
})

command("bt", {
  usage = "bt [TID|all] [full]",
  help = "The stack of thread TID (default: all threads), innermost frame first,\n" ..
         "with inlined frames and source lines. Runs of frames of the program's\n" ..
         "dependencies are folded into one line (\"... 38 frames in tokio, std\", as\n" ..
         "taskdbg bt prints them); `full` shows every frame.",
  run = function(args)
    local full, rest = false, {}
    for _, a in ipairs(args) do
      if a == "full" then full = true else rest[#rest + 1] = a end
    end
    local want = rest[1] and rest[1] ~= "all" and tonumber(rest[1])
    if (rest[1] and rest[1] ~= "all" and not want) or rest[2] then
      usage_error("bt takes a thread id or all, and full")
    end
    -- Which runs to fold is report/bt.c's rule (td_report_folds_json), per thread of T.threads().
    local folds = not full and T._folds() or EMPTY
    local shown = 0
    for n, th in ipairs(T.threads()) do
      if not want or th.tid == want then
        if shown > 0 then out("\n") end
        out(thread_header(th), "\n")
        local runs = {}
        for _, r in ipairs(folds[n] or EMPTY) do runs[r.from] = r end
        local frames, i = th.frames or EMPTY, 0
        while i < #frames do
          local r = runs[i]
          if r then
            out(dim(string.format("  ... %d frames in %s", r.count, r.crates)), "\n")
            i = i + r.count
          else
            out(frame_line(i, frames[i + 1]), "\n")
            i = i + 1
          end
        end
        shown = shown + 1
      end
    end
    if want and shown == 0 then usage_error(string.format("no thread %d (see `threads`)", want)) end
  end,
  complete = function()
    local ids = { "all", "full" }
    for _, th in ipairs(T.threads()) do ids[#ids + 1] = tostring(th.tid) end
    return ids
  end,
})

-- ---- tasks ----

local function waits_text(w)
  if type(w) ~= "table" then return nil end
  local s = (w.kind or "?") .. (w.address and (" " .. tostring(w.address)) or "")
  if w.remaining_ms then s = s .. string.format(" (%s)", w.remaining_ms >= 0 and
    string.format("due in %.0f ms", w.remaining_ms) or string.format("due %.0f ms ago", -w.remaining_ms)) end
  if type(w.tasks) == "table" and #w.tasks > 0 then
    local ids = {}
    for _, id in ipairs(w.tasks) do ids[#ids + 1] = tostring(id) end
    s = s .. " (task " .. table.concat(ids, ", ") .. ")"
  end
  return s
end

local function resource_names(t)
  local names = {}
  local function add(r) if type(r) == "table" then names[#names + 1] = (r.kind or "") .. " " .. tostring(r.address or "") end end
  add(t.waiting_on)
  for _, h in ipairs(t.holds or EMPTY) do add(h.resource) end
  return names
end

-- What a person calls a task (a hyper connection by its handler); the
-- task's future is named after it when they differ.
local function root_of(t) return T.display_name(t) or "?" end

local FILTERS = {
  name = function(t) return { root_of(t), t.name or "", t.future or "" } end,
  fn = function(t) return { root_of(t), t.name or "", t.future or "" } end,
  await = function(t)
    local x = { T.await_point(t) }
    for _, l in ipairs(t.backtrace or EMPTY) do x[#x + 1] = (l.name or "") .. " " .. (l.file or "") .. ":" .. (l.line or "") end
    return x
  end,
  state = function(t) return { t.state or "" } end,
  resource = resource_names,
}
local GROUPS = {
  fn = function(t) return "fn " .. root_of(t) end,
  await = function(t) return "await " .. T.await_point(t) end,
  state = function(t) return "state " .. (t.state or "?") end,
  spawn = function(t)
    local s = t.spawned_at
    if type(s) == "table" then return string.format("spawned at %s:%s", s.file, s.line) end
    return "spawned at (unknown: tokio records it only with tokio_unstable)"
  end,
}

local function matches(t, kind, pattern)
  for _, text in ipairs(FILTERS[kind](t)) do
    if text:find(pattern, 1, true) then return true end
  end
  return false
end

local function task_line(t)
  local w = t.state ~= "running" and waits_text(t.waiting_on)
  -- padded outside the colour: %-9s would count the escape codes as columns
  local st = t.state or "?"
  local root = root_of(t)
  local within = root ~= t.name and t.name and ("  (in " .. t.name .. ")") or ""
  return string.format("%6d  %s%s %s%s  %s%s", t.id, state(st), string.rep(" ", 9 - #st), bold(root), within,
    dim(T.await_point(t)), w and ("  waiting on " .. w) or "")
end

local function parse_task_options(args)
  local o = { with = {}, without = {} }
  local i = 1
  while i <= #args do
    local a = args[i]
    if a == "-with" or a == "-without" then
      local kind, pattern = args[i + 1], args[i + 2]
      if not kind or not FILTERS[kind] or not pattern then
        usage_error(a .. " takes name|await|state|resource and a PATTERN")
      end
      table.insert(a == "-with" and o.with or o.without, { kind, pattern })
      i = i + 3
    elseif a == "-group" then
      local by = args[i + 1]
      if not GROUPS[by] then usage_error("-group takes fn, await, state or spawn") end
      o.group = by
      i = i + 2
    elseif a == "-stuck" then
      o.stuck = true
      i = i + 1
    else
      usage_error("unknown option " .. a .. " (see `help tasks`)")
    end
  end
  return o
end

local function select_tasks(o)
  local stuck, span
  if o.stuck then
    stuck, span = T.stuck()
    local n = #T.history()
    if n < 2 then
      usage_error("-stuck needs two snapshots or more in the history (run `refresh`, or wait for the background)")
    end
  end
  local list = {}
  for _, t in ipairs(T.tasks()) do
    local keep = not stuck or stuck[t.id]
    for _, f in ipairs(o.with) do keep = keep and matches(t, f[1], f[2]) end
    for _, f in ipairs(o.without) do keep = keep and not matches(t, f[1], f[2]) end
    if keep then list[#list + 1] = t end
  end
  return list, span
end

command("tasks", {
  usage = "tasks [-with|-without name|await|state|resource PATTERN]... [-group fn|await|state|spawn] [-stuck]",
  help = "The async tasks: id, state, name, the .await it is suspended at, what it waits on.\n" ..
         "  -with K PATTERN     only tasks whose K contains PATTERN (K: name, await, state, resource)\n" ..
         "  -without K PATTERN  leave those out\n" ..
         "  -group fn|await|state|spawn   count tasks per group; a few members of each\n" ..
         "  -stuck              tasks that did not move across the history: same state,\n" ..
         "                      same await points, same deadlines (two snapshots at least)",
  run = function(args)
    local why = T.no_runtime()
    if why then out(why, "\n") return end
    local o = parse_task_options(args)
    local list, span = select_tasks(o)
    if o.group then
      local groups, keys = {}, {}
      for _, t in ipairs(list) do
        local k = GROUPS[o.group](t)
        if not groups[k] then groups[k] = {}; keys[#keys + 1] = k end
        table.insert(groups[k], t)
      end
      table.sort(keys, function(a, b)
        if #groups[a] ~= #groups[b] then return #groups[a] > #groups[b] end
        return a < b
      end)
      for _, k in ipairs(keys) do
        local g = groups[k]
        outf("%s: %d task%s\n", bold(k), #g, #g == 1 and "" or "s")
        for i = 1, math.min(#g, 5) do out("  ", task_line(g[i]), "\n") end
        if #g > 5 then outf("  ... and %d more\n", #g - 5) end
      end
    else
      for _, t in ipairs(list) do out(task_line(t), "\n") end
    end
    if not o.stuck and not o.group and #o.with == 0 and #o.without == 0 then
      for _, b in ipairs(T.block_on()) do
        local w = b.state ~= "running" and waits_text(b.waiting_on)
        outf("%6s  %-9s %s  %s%s\n", "-", state(b.state or "?"), bold(b.name or "?"),
          dim(T.await_point(b)), (w and ("  waiting on " .. w) or "") .. string.format("  (block_on, thread %d)", b.thread))
      end
    end
    local total = #T.tasks()
    if o.stuck then
      outf("%d of %d tasks stuck over the last %.1f s (%d snapshots)\n", #list, total, span, #T.history())
    else
      outf("%d of %d tasks\n", #list, total)
    end
  end,
  complete = function(args, word)
    local prev = args[#args]
    if prev == "-with" or prev == "-without" then return { "name", "await", "state", "resource" } end
    if prev == "-group" then return { "fn", "await", "state", "spawn" } end
    if args[#args - 1] == "-with" or args[#args - 1] == "-without" then
      if prev == "state" then return { "idle", "running", "notified", "complete", "cancelled" } end
      if prev == "resource" then
        local r = {}
        for _, e in ipairs(T.resources()) do r[#r + 1] = tostring(e.address) end
        return r
      end
      return {}
    end
    return { "-with", "-without", "-group", "-stuck" }
  end,
})

local function holders_text(e)
  local h = {}
  for _, x in ipairs(e.holders) do
    if x.task then h[#h + 1] = string.format("task %d %s%s", x.task, x.name or "?", x.as and (" (as `" .. x.as .. "`)") or "")
    else h[#h + 1] = string.format("thread %d", x.thread) end
  end
  return h
end

local function resource_of(key)
  for _, e in ipairs(T.resources()) do
    if e.key == key then return e end
  end
end

local function show_task(t)
  local root = root_of(t)
  outf("task %d  %s%s  %s  (runtime %s)\n", t.id, bold(root), root ~= t.name and t.name and ("  (in " .. t.name .. ")") or "",
    state(t.state or "?"), tostring(t.runtime))
  outf("  future: %s\n", t.future or "?")
  if t.running_on and t.running_on ~= td.null then outf("  running on thread %d\n", t.running_on) end
  if t.span and t.span ~= td.null then outf("  span: %s\n", type(t.span) == "table" and (t.span.name or T.json(t.span)) or tostring(t.span)) end
  out("  await tree (outermost first):\n")
  local function tree(bt, indent)
    for _, l in ipairs(bt or EMPTY) do
      outf("%s%s  %s  %s\n", indent, l.own and bold(l.name or "?") or (l.name or "?"), dim(l.state or "?"),
        l.file and string.format("%s:%s", l.file, l.line or 0) or "")
      if l.own and l.file and l.line then
        local text = T.source_line(l.file, l.line)
        if text then outf("%s    %5d | %s\n", indent, l.line, (text:gsub("^%s+", ""))) end
      end
      for ci, c in ipairs(l.children or EMPTY) do
        outf("%s  branch %d:\n", indent, ci)
        tree(c, indent .. "    ")
      end
      if l.waiting_on and l.waiting_on ~= td.null and l ~= bt[#bt] then
        outf("%s  waiting on %s\n", indent, waits_text(l.waiting_on))
      end
    end
  end
  tree(t.backtrace, "    ")
  if t.holds and #t.holds > 0 then
    out("  alive across this .await:\n")
    for _, h in ipairs(t.holds) do
      outf("    %s: %s%s\n", h.name or "?", h.type or "?",
        type(h.resource) == "table" and ("  -> " .. (h.resource.kind or "?") .. " " .. tostring(h.resource.address)) or "")
    end
  end
  local w = t.waiting_on
  if type(w) == "table" then
    outf("  waits on: %s\n", waits_text(w))
    local e = w.key and resource_of(w.key)
    if e then
      local h = holders_text(e)
      if #h > 0 then outf("    held by: %s\n", table.concat(h, "; ")) end
      local others = {}
      for _, x in ipairs(e.waiters) do if x.task ~= t.id then others[#others + 1] = tostring(x.task) end end
      if #others > 0 then outf("    also waited on by task %s\n", table.concat(others, ", ")) end
    end
  end
  local log = T.history(t.id) or EMPTY
  local snaps = T.history()
  if #snaps >= 2 then
    local still = T.unmoved(t.id) or 0
    outf("  history: %d snapshots over %.1f s; unchanged for the last %.1f s\n", #snaps,
      snaps[#snaps].t - snaps[1].t, still)
    for _, c in ipairs(log) do
      outf("    #%d  %+.1f s  %-9s %s\n", c.seq, c.t - snaps[#snaps].t, c.state, c.at)
    end
  else
    out("  history: one snapshot so far\n")
  end
end

local function task_ids()
  local ids = {}
  for _, t in ipairs(T.tasks()) do ids[#ids + 1] = tostring(t.id) end
  return ids
end

command("task", {
  usage = "task ID",
  help = "One task: its runtime and state; the await tree, with the source line and text\n" ..
         "of each level; the guards, permits and channel ends alive across the current\n" ..
         ".await; what it waits on and who holds that; its history across snapshots.",
  run = function(args)
    local id = tonumber(args[1])
    if not id then usage_error("task takes a task id (see `tasks`)") end
    local t = T.task(id)
    if not t then usage_error(string.format("no task %d (see `tasks`)", id)) end
    show_task(t)
  end,
  complete = task_ids,
})

command("resources", {
  usage = "resources [-with PATTERN]",
  help = "Locks, semaphores, channels, timers and join handles the tasks hold or wait on,\n" ..
         "with holders and waiters (as tokio-console's resource view, read from memory).",
  run = function(args)
    local pattern
    if args[1] == "-with" then
      pattern = args[2] or usage_error("-with takes a PATTERN")
    elseif args[1] then
      usage_error("resources takes -with PATTERN")
    end
    local n = 0
    for _, e in ipairs(T.resources()) do
      local text = (e.kind or "") .. " " .. tostring(e.address or "")
      if not pattern or text:find(pattern, 1, true) then
        n = n + 1
        outf("%s %s\n", bold(e.kind or "?"), tostring(e.address or ""))
        local h = holders_text(e)
        if #h > 0 then outf("  held by: %s\n", table.concat(h, "; ")) end
        if #e.waiters > 0 then
          local ws = {}
          for _, x in ipairs(e.waiters) do ws[#ws + 1] = string.format("task %d %s", x.task, x.name or "?") end
          outf("  waited on by: %s\n", table.concat(ws, "; "))
        end
      end
    end
    outf("%d resource%s\n", n, n == 1 and "" or "s")
  end,
  complete = function(args)
    if args[#args] == "-with" then
      local r = {}
      for _, e in ipairs(T.resources()) do r[#r + 1] = tostring(e.address) end
      return r
    end
    return { "-with" }
  end,
})

-- ---- diagnosis, snapshots, history ----

local function show_findings(findings)
  if #findings == 0 then out("no problem found\n") return end
  for i, f in ipairs(findings) do
    outf("%s %s: %s\n", paint("1;31", string.format("[%d]", i)), bold(f.kind), f.summary)
    for _, e in ipairs(f.evidence or EMPTY) do out("    ", e, "\n") end
    if f.fix then out("    fix: ", f.fix, "\n") end
  end
end

command("diagnose", {
  usage = "diagnose [--window D]",
  help = "Run every detector (deadlock, greedy_task, blocking_in_async, self_shutdown,\n" ..
         "starvation, lost_waker). On a live process the history's snapshots serve\n" ..
         "where they cover the window (default 1s); otherwise it is sampled now.",
  run = function(args)
    local window = 1
    if args[1] == "--window" or args[1] == "-window" then
      window = seconds(args[2]) or usage_error("--window takes a duration: 500ms, 2s")
    elseif args[1] then
      usage_error("diagnose takes --window D")
    end
    local findings, used, n = T.diagnose { window = window }
    if T.target().kind == "live" then outf("%s\n", dim(string.format("(window %.1f s: %s, %d samples)", window, used, n))) end
    show_findings(findings)
  end,
  complete = function() return { "--window" } end,
})

command("refresh", {
  usage = "refresh",
  help = "Take a new snapshot now (a live process). The background takes one every --interval.",
  run = function()
    T.refresh()
    local s = T.snapshot()
    outf("snapshot %d: %d tasks, %d moved since the last; target stopped %.2f ms\n", s.seq, s.tasks, s.moved, s.stopped_ms or 0)
  end,
})

command("history", {
  usage = "history [TASK]",
  help = "The snapshots kept (time, tasks, how many moved), or one task's changes across them.",
  run = function(args)
    local snaps = T.history()
    local last = snaps[#snaps]
    if args[1] then
      local id = tonumber(args[1]) or usage_error("history takes a task id")
      local log = T.history(id) or usage_error(string.format("no task %d now", id))
      outf("task %d across %d snapshots (%.1f s):\n", id, #snaps, last.t - snaps[1].t)
      for _, c in ipairs(log) do outf("  #%d  %+.1f s  %-9s %s\n", c.seq, c.t - last.t, c.state, c.at) end
      outf("unchanged for the last %.1f s\n", T.unmoved(id) or 0)
      return
    end
    local target = T.target()
    if target.gap_ms and target.interval_ms > 0 and target.gap_ms > target.interval_ms * 1.05 then
      -- (milliseconds under a second: "every 0.1 s rather than 0.1 s" said nothing)
      local function span(ms) return ms < 1000 and string.format("%.0f ms", ms) or string.format("%.1f s", ms / 1000) end
      outf("%s\n", dim(string.format("(a snapshot every %s rather than %s: the last stopped the target %.1f ms "
        .. "and took taskdbg %.2f s; the background keeps the target stopped under 5%% of the time and taskdbg "
        .. "under half a core)", span(target.gap_ms), span(target.interval_ms), target.stopped_ms or 0,
        (target.work_ms or 0) / 1000)))
    end
    outf("%-6s %-9s %-7s %-7s %s\n", "SNAP", "AGE", "TASKS", "MOVED", "STOPPED")
    for _, s in ipairs(snaps) do
      outf("#%-5d %-9s %-7d %-7d %.2f ms\n", s.seq, string.format("%+.1fs", s.t - last.t), s.tasks, s.moved, s.stopped_ms or 0)
    end
  end,
  complete = task_ids,
})

command("watch", {
  usage = "watch INTERVAL COMMAND...",
  help = "Run COMMAND every INTERVAL (1s, 500ms), with a new snapshot each time, until Ctrl-C.",
  run = function(args)
    local every = seconds(args[1]) or usage_error("watch takes an interval (1s, 500ms) and a command")
    local line = table.concat(args, " ", 2)
    if line == "" then usage_error("watch takes a command after the interval") end
    if line:match("^watch") then usage_error("watch cannot watch itself") end
    for round = 1, math.huge do
      if round > 1 then T.refresh() end
      if T.interactive then out("\27[H\27[2J") end
      outf("%s\n", dim(string.format("every %gs: %s   (Ctrl-C to stop)", every, line)))
      C.run(line)
      T.flush()
      T.sleep(every)
    end
  end,
})

-- ---- values, Lua, dump, leaving ----

local function show_value(v)
  if type(v) == "userdata" and getmetatable(v) == nil then return tostring(v) end
  if type(v) == "userdata" then
    local ok, text = pcall(T.format_value, v)
    return ok and text or tostring(v)
  end
  if type(v) == "table" then return T.json(v, true) end
  return tostring(v)
end

-- print EXPR: a global (a::b::NAME), a thread-local (tls PATH TID), a frame's
-- local (frame TID N NAME), or a task's field path (task ID.field.field).
command("print", {
  usage = "print EXPR",
  help = "Show a value, typed:\n" ..
         "  print task ID[.FIELD...]      a task's record (tasks --json's TASK) or a field of it\n" ..
         "  print GLOBAL[.FIELD...]       a static of the program (a::b::NAME)\n" ..
         "  print tls PATH TID            a thread-local of thread TID\n" ..
         "  print local TID NAME          a local variable of thread TID's innermost frame holding it",
  run = function(args)
    local a = args[1] or usage_error("print takes an expression (see `help print`)")
    local function path_into(v, path)
      for field in (path or ""):gmatch("[^%.]+") do
        if type(v) == "table" then v = v[tonumber(field) or field]
        elseif type(v) == "userdata" then v = v[field]
        else usage_error("no field " .. field) end
        if v == nil then usage_error("no field " .. field) end
      end
      return v
    end
    local v
    if a == "task" then
      local id, path = (args[2] or ""):match("^(%d+)%.?(.*)$")
      local t = T.task(tonumber(id)) or usage_error("no such task (see `tasks`)")
      v = path_into(t, path)
    elseif a == "tls" then
      local tid = tonumber(args[3]) or usage_error("print tls PATH TID")
      local x, err = td.tls(args[2], tid)
      v = x or usage_error(tostring(err))
    elseif a == "local" then
      local tid = tonumber(args[2]) or usage_error("print local TID NAME")
      for _, l in ipairs(td.frame_locals(tid)) do
        if l.name == args[3] then v = td.value(l.type, l.addr) break end
      end
      if v == nil then usage_error("no local " .. tostring(args[3]) .. " in thread " .. tid) end
    else
      local name, path = a:match("^([^%.]+)%.?(.*)$")
      local x, err = td.global and td.global(name)
      if not x then usage_error("no global " .. name .. (err and (": " .. tostring(err.message or err)) or "")) end
      v = path_into(x, path)
    end
    if type(v) == "userdata" then
      local ok, ty = pcall(td.type_name, v)
      local at = pcall(td.addr, v) and td.addr(v)
      if ok and ty then outf("(%s%s) ", ty, at and string.format(" at 0x%x", at) or "") end
    end
    out(show_value(v), "\n")
  end,
  complete = function(args) if #args == 0 then return { "task", "tls", "local" } end if args[1] == "task" then return task_ids() end return {} end,
})

command("lua", {
  usage = "lua CODE",
  help = "Run Lua in the session (the taskdbg and td tables of docs/lua-api.md; io, os).\n" ..
         "An expression's value is shown: lua #taskdbg.tasks()",
  raw = true,
})

command("source", {
  usage = "source FILE [ARG...]",
  help = "Run a Lua script in the session, as `taskdbg run` would.",
  raw = true,
  files = true,
})

command("dump", {
  usage = "dump FILE",
  help = "Write an ELF core of the live process (as gcore does, without gdb): open it\n" ..
         "later with `taskdbg core FILE`, or with gdb. The process is stopped only while\n" ..
         "its memory is copied.",
  files = true,
  run = function(args)
    local path = args[1] or usage_error("dump takes a FILE")
    local r = T.dump(path)
    outf("wrote %s (%.1f MiB, %d threads): target stopped %.1f ms\n", path, (r.bytes or 0) / 1048576,
      r.threads or 0, r.stopped_ms or 0)
  end,
})

command("help", {
  usage = "help [COMMAND]",
  help = "The commands, or one command's help.",
  run = function(args)
    if args[1] then
      local c = commands[args[1]] or usage_error("no command " .. args[1] .. " (see `help`)")
      outf("usage: %s\n%s\n", c.usage, c.help)
      return
    end
    for _, name in ipairs(order) do
      outf("  %-44s %s\n", commands[name].usage:sub(1, 44), (commands[name].help:match("^[^\n]*")))
    end
  end,
  complete = function() return order end,
})

command("detach", {
  usage = "detach",
  help = "Leave the session; a live process goes on running (it already does between commands).",
  quit = true,
  aliases = { "quit", "exit", "q" },
})

-- ---- what repl.c calls ----

function C.prompt()
  local t = T.target()
  if t.kind == "core" then
    local base = (t.core or "core"):match("([^/]+)$")
    return string.format("taskdbg %s> ", base)
  end
  -- target().name: the process's comm (api.lua passes td_report_target_json's fields)
  return string.format("taskdbg %d (%s)> ", t.pid, t.name or "?")
end

function C.run(line)
  local w = words(line)
  local name = w[1]
  if not name then return false end
  local c = commands[name]
  if not c then usage_error(string.format("unknown command '%s' (type `help`)", name)) end
  if c.quit then return true end
  if name == "lua" then
    local code = line:match("^%s*lua%s+(.*)$") or usage_error("lua takes Lua code")
    -- an expression shows its value, as Lua's own REPL does
    local f, err = load("return " .. code, "=lua", "t", ENV)
    if not f then f, err = load(code, "=lua", "t", ENV) end
    if not f then usage_error(err) end
    C.show_results(f)
    return false
  end
  if name == "source" then
    local path = w[2] or usage_error("source takes a FILE")
    local fh, err = io.open(path)
    if not fh then usage_error(err) end
    local text = fh:read("a")
    fh:close()
    local args = { [0] = path }
    for i = 3, #w do args[#args + 1] = w[i] end
    local env = setmetatable({ arg = args, args = args }, { __index = ENV })
    local f, lerr = load(text, "@" .. path, "t", env)
    if not f then usage_error(lerr) end
    local r = f()
    if type(r) == "table" then out(T.json(r, true), "\n") end
    return false
  end
  table.remove(w, 1)
  c.run(w)
  return false
end

-- Candidates for word; nil where readline should complete file names.
function C.complete(line, word)
  local w = words(line)
  local first = #w == 0 or (#w == 1 and word ~= "")
  local cands
  if first then
    cands = {}
    for name in pairs(commands) do cands[#cands + 1] = name end
  else
    local c = commands[w[1]]
    if c and c.files then return nil end   -- file names: readline's own completion
    if not c or not c.complete then return {} end
    local args = {}
    for i = 2, #w - (word ~= "" and 1 or 0) do args[#args + 1] = w[i] end
    cands = c.complete(args, word) or {}
  end
  local out_ = {}
  for _, x in ipairs(cands) do
    if x:sub(1, #word) == word then out_[#out_ + 1] = x end
  end
  table.sort(out_)
  return out_
end

-- `lua CODE`: shows what an expression gives (tables as JSON).
function C.show_results(f)
  local r = table.pack(f())
  for i = 1, r.n do
    local v = r[i]
    if type(v) == "table" then out(T.json(v, true), "\n") else out(show_value(v), "\n") end
  end
end

return C
