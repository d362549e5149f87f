-- starvation: tasks are ready to run (notified) but no worker polls them,
-- because every worker of their runtime is busy with one poll or blocked
-- (including a current-thread runtime whose only thread is blocked inside
-- block_on). Live: the same tasks stay notified in every sample of the
-- window; a core: one snapshot, where every worker is blocked.
--
-- Timers nobody runs (live only: a core records no "now"): tasks wait on a
-- timer whose deadline passed before the window began, and no thread of the
-- process is parked in the runtime's driver (the plugin's frames.driver_park),
-- where a runtime such as tokio fires timers and reads socket readiness. A
-- worker blocked in a poll while the other parks without the driver leaves
-- it so; those tasks are not even notified, so the rule above cannot see them.

local lib = require("_lib")
local blocking = require("_blocking")
local runtime_frame, class_of, kind_of_class, advice = lib.runtime_frame, lib.class_of, lib.kind_of_class, lib.advice
local task_label, thread_label, task_ref, finding, at = lib.task_label, lib.thread_label, lib.task_ref, lib.finding, lib.at
local short_fn, fn_of, user_await, awaiting_text, innermost = lib.short_fn, lib.fn_of, lib.user_await, lib.awaiting_text, lib.innermost

local SHOWN = 8

-- What a worker thread is doing, if it is not free to poll: a line, or nil.
local function occupied(ctx, th, ix, live)
  if not th then return nil end
  local b = blocking.blocked_poll(ctx, th, ix)
  if b then
    return string.format("%s is blocked in %s (%s) at %s%s", thread_label(th),
      b.api and short_fn(fn_of(b.api)) or b.syscall, b.syscall, at(b.user) or "?",
      b.task and (" polling " .. task_label(b.task)) or (b.how == "block_on" and " inside block_on" or ""))
  end
  local task = ix.polling[th.tid]
  if task and live then
    return string.format("%s is busy polling %s", thread_label(th), task_label(task))
  end
  return nil
end

local function notified_throughout(ctx, rt)
  local ids, n = nil, 0
  for _, s in ipairs(ctx.samples) do
    local rec
    for _, r in ipairs(s.runtimes or {}) do if r.address == rt.address then rec = r end end
    if not rec then return {}, 0 end
    n = n + 1
    if not ids then
      ids = {}
      for id in pairs(rec.notified) do ids[id] = true end
    else
      for id in pairs(ids) do if not rec.notified[id] then ids[id] = nil end end
    end
  end
  return ids or {}, n
end

-- A thread parked in a runtime's driver (time and I/O), if any.
local function driven(ctx, ix)
  for _, th in ipairs(ctx.threads) do
    if runtime_frame(ix, th, "driver_park") then return th end
  end
  return nil
end

-- The timer a task waits for, if its deadline passed: the timer it awaits,
-- or the timeout it awaits inside (TASK.timeout). Returns the overdue
-- time in ms (positive), and whether it is a timeout.
local function overdue(ix, t)
  local w = t.waiting_on
  if w and class_of(ix, w) == "timer" and w.remaining_ms then return -w.remaining_ms, false end
  local limit = type(t.timeout) == "table" and t.timeout or nil
  if limit and limit.remaining_ms then return -limit.remaining_ms, true end
  return nil
end

-- Tasks of rt idle on a timer whose deadline passed more than `ms` ago.
local function overdue_sleepers(ix, rt, ms)
  local out, late = {}, {}
  for _, t in ipairs(rt.tasks or {}) do
    local by = t.state == "idle" and overdue(ix, t)
    if by and by > ms then
      out[#out + 1] = t
      late[t] = by
    end
  end
  table.sort(out, function(a, b) return late[a] > late[b] end)
  return out
end

local function seconds(ms)
  return ms >= 1000 and string.format("%.1f s", ms / 1000) or string.format("%.0f ms", ms)
end

-- The finding for `late` (tasks on overdue timers) of rt.
local function stalled_finding(ctx, ix, rt, late)
  local tasks, evidence = {}, {}
  for i, t in ipairs(late) do
    tasks[#tasks + 1] = task_ref(t)
    if i <= SHOWN then
      local aw = user_await(t)
      local by, in_timeout = overdue(ix, t)
      if in_timeout then
        evidence[#evidence + 1] = string.format("%s awaits %s%s inside a %s whose deadline passed %s ago",
          task_label(t), aw and awaiting_text(aw) or "?", aw and at(aw) and (" at " .. at(aw)) or "",
          advice(ix, "timeout", "timeout"), seconds(by))
      else
        evidence[#evidence + 1] = string.format("%s waits on a %s%s whose deadline passed %s ago",
          task_label(t), kind_of_class(ix, "timer", "timer"), aw and at(aw) and (" at " .. at(aw)) or "", seconds(by))
      end
    end
  end
  if #late > SHOWN then evidence[#evidence + 1] = string.format("... and %d more", #late - SHOWN) end
  local threads = {}
  for _, tid in ipairs(rt.workers) do
    local th = ix.threads[tid]
    threads[#threads + 1] = tid
    evidence[#evidence + 1] = occupied(ctx, th, ix, true)
      or string.format("%s is parked without the driver, waiting to be notified", thread_label(th))
  end
  evidence[#evidence + 1] = "no thread is parked in the runtime's driver, where it fires timers and reads socket readiness"
  local f = finding("starvation",
    string.format("%d task%s of runtime %d (%s) wait%s on timers that expired up to %s ago: nothing runs the runtime's timer and I/O driver",
      #late, #late == 1 and "" or "s", rt.id, rt.flavor, #late == 1 and "s" or "", seconds((overdue(ix, late[1])))),
    { tasks = tasks, threads = threads, evidence = evidence,
      fix = "unblock the workers (move blocking work to spawn_blocking): while one is blocked in a poll, the runtime may leave its timers and sockets unserved" })
  -- A task caught in a deadlock is told there (its timer is one edge of the cycle).
  f.explained_by = "deadlock"
  f.retell = function(refs)
    local keep, left = {}, {}
    for _, r in ipairs(refs) do keep[r.id] = true end
    for _, t in ipairs(late) do if keep[t.id] then left[#left + 1] = t end end
    return stalled_finding(ctx, ix, rt, left)
  end
  return f
end

local function stalled_timers(ctx, ix, rt)
  local late = overdue_sleepers(ix, rt, ctx.options.window_ms)
  if #late == 0 or driven(ctx, ix) then return nil end
  return stalled_finding(ctx, ix, rt, late)
end

local function run(ctx, ix)
  local out = {}
  local live = ctx.options.live
  for _, rt in ipairs(ix.runtimes) do
    local ready = {}
    for _, t in ipairs(rt.tasks or {}) do
      if t.state == "notified" then ready[#ready + 1] = t end
    end
    if live and #ready > 0 then
      local ids, n = notified_throughout(ctx, rt)
      local kept = {}
      for _, t in ipairs(ready) do if ids[t.id] then kept[#kept + 1] = t end end
      ready = n >= 3 and kept or {}
    end
    if #ready > 0 and #rt.workers > 0 then
      local lines, all = {}, true
      for _, tid in ipairs(rt.workers) do
        local line = occupied(ctx, ix.threads[tid], ix, live)
        if not line then all = false; break end
        lines[#lines + 1] = line
      end
      if all then
        local tasks, evidence = {}, {}
        for i, t in ipairs(ready) do
          tasks[#tasks + 1] = task_ref(t)
          if i <= SHOWN then
            local aw = innermost(t)
            evidence[#evidence + 1] = string.format("%s is ready%s", task_label(t),
              aw and at(aw) and aw.state ~= "Unresumed" and (" (woken at " .. at(aw) .. ")") or ", never polled yet")
          end
        end
        if #ready > SHOWN then evidence[#evidence + 1] = string.format("... and %d more", #ready - SHOWN) end
        for _, l in ipairs(lines) do evidence[#evidence + 1] = l end
        local threads = {}
        for _, tid in ipairs(rt.workers) do threads[#threads + 1] = tid end
        local span = live and string.format(" throughout the %.0f ms window", ctx.options.window_ms) or ""
        out[#out + 1] = finding("starvation",
          string.format("%d task%s of runtime %d (%s) %s ready but never polled%s: every worker is %s",
            #ready, #ready == 1 and "" or "s", rt.id, rt.flavor, #ready == 1 and "is" or "are", span,
            rt.flavor == "current_thread" and "blocked (its only thread)" or "busy or blocked"),
          { tasks = tasks, threads = threads, evidence = evidence,
            fix = "unblock the workers: move blocking work to spawn_blocking, and yield in long polls" })
      end
    end
    if live and (#out == 0 or out[#out].summary:find("of runtime " .. rt.id .. " ", 1, true) == nil) then
      out[#out + 1] = stalled_timers(ctx, ix, rt)
    end
  end
  return out
end

return { name = "starvation", severity = 3, run = run }
