-- starvation: tasks are ready to run (notified) but no worker polls them,
-- because every worker of their runtime is busy with one poll or blocked
-- (including a current-thread runtime whose only thread is blocked inside
-- block_on). Live: the same tasks stay notified in every sample of the
-- window; a core: one snapshot, where every worker is blocked.

local SHOWN = 8

-- What a worker thread is doing, if it is not free to poll: a line, or nil.
local function occupied(ctx, th, ix, live)
  if not th then return nil end
  local b = blocked_poll(ctx, th, ix)
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

detectors.starvation = function(ctx, ix)
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
  end
  return out
end
