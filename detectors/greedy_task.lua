-- greedy_task: one poll of a task that runs longer than the threshold without
-- yielding. In every sample, each thread's scheduler tick (its Core counts
-- every task it starts) and the task it polls are recorded; the same task at
-- the same tick in consecutive samples is one poll that has not returned. A
-- task that yields often shows a new tick each time, however busy it is.
-- Needs a live target (samples over a window).

local lib = require("_lib")
local user_call, poll_entry, short_fn, fn_of, at, advice = lib.user_call, lib.poll_entry, lib.short_fn, lib.fn_of, lib.at, lib.advice
local task_label, task_ref, finding = lib.task_label, lib.task_ref, lib.finding

local function run(ctx, ix)
  if not ctx.options.live then return {} end
  local threshold = ctx.options.greedy_threshold_ms
  local runs = {}   -- tid -> { task, tick, first, last, n, blocked }
  local worst = {}  -- task id -> longest run
  local function close(tid)
    local r = runs[tid]
    if r and r.last - r.first >= threshold and r.blocked * 2 < r.n then
      local w = worst[r.task]
      if not w or (r.last - r.first) > (w.last - w.first) then worst[r.task] = r end
    end
    runs[tid] = nil
  end
  local tids = {}
  for _, s in ipairs(ctx.samples) do
    for tid, th in pairs(s.threads) do
      tids[tid] = true
      local r = runs[tid]
      if th.task and th.tick and r and r.task == th.task and r.tick == th.tick then
        r.last, r.n = s.t, r.n + 1
        if th.syscall then r.blocked = r.blocked + 1 end
      else
        close(tid)
        if th.task and th.tick then
          runs[tid] = { tid = tid, task = th.task, tick = th.tick, first = s.t, last = s.t, n = 1,
                        blocked = th.syscall and 1 or 0 }
        end
      end
    end
  end
  for tid in pairs(tids) do close(tid) end
  local out = {}
  local ids = {}
  for id in pairs(worst) do ids[#ids + 1] = id end
  table.sort(ids)
  for _, id in ipairs(ids) do
    local r = worst[id]
    local t = ix.tasks[id] or { id = id, name = "?" }
    local th = ix.threads[r.tid]
    local ms = r.last - r.first
    local evidence = {
      string.format("%s ran on thread %d for at least %.0f ms in one poll (%d samples, scheduler tick %d throughout)",
        task_label(t), r.tid, ms, r.n, r.tick),
    }
    local now = ix.polling[r.tid]
    if th and now and now.id == id then
      local user = user_call(th, (poll_entry(ix, th)))
      if user then
        evidence[#evidence + 1] = string.format("its thread is now in %s at %s",
          short_fn(fn_of(user)), at(user) or "?")
      end
    end
    out[#out + 1] = finding("greedy_task",
      string.format("%s ran %.0f ms without yielding (threshold %.0f ms): its worker runs nothing else meanwhile",
        task_label(t), ms, threshold),
      { tasks = { task_ref(t) }, threads = { r.tid }, evidence = evidence,
        fix = string.format("yield in long loops (%s), or move CPU-heavy work to %s / a thread pool",
          advice(ix, "yield_now", "an async yield"), advice(ix, "spawn_blocking", "a blocking thread")) })
  end
  return out
end

return { name = "greedy_task", severity = 5, run = run }
