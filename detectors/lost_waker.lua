-- lost_waker: a pending task that nothing can ever wake.
--
-- The plugin counts the wakers of each idle task where its runtime can tell
-- (TASK.wakers, with refs and refs_held: whose references the count holds;
-- tokio counts every Waker in the task's reference count). An idle task
-- (polled, pending, not notified) with no waker anywhere cannot be woken by
-- any timer, I/O source, channel or lock: it waits forever.

local lib = require("_lib")
local innermost, awaiting_text, at, chain_lines = lib.innermost, lib.awaiting_text, lib.at, lib.chain_lines
local task_label, task_ref, finding = lib.task_label, lib.task_ref, lib.finding

local function run(ctx, ix)
  local out = {}
  local ids = {}
  for id in pairs(ix.tasks) do ids[#ids + 1] = id end
  table.sort(ids)
  for _, id in ipairs(ids) do
    local t = ix.tasks[id]
    local aw = innermost(t)
    -- Polled at least once: it is suspended at an .await (not Unresumed), or
    -- its future holds no async fn at all (a hand-written future spawned
    -- directly, maybe inside .instrument()): idle is after a poll then.
    local suspended = aw and type(aw.state) == "string" and aw.state:find("^Suspend") ~= nil
    local bare = not aw and type(t.backtrace) == "table" and #t.backtrace == 0 and type(t.future) == "string"
    if t.state == "idle" and math.type(t.wakers) == "integer" and (suspended or bare) then
      local refs = math.type(t.refs) == "integer" and t.refs or 0
      if t.wakers <= 0 then
        local awaiting = aw and awaiting_text(aw) or "?"
        local fix = "the future it awaits returned Pending without keeping cx.waker() (clone it and call wake() when ready)"
        local evidence = {
          string.format("%s is idle with %d reference%s: %s, none for a waker",
            task_label(t), refs, refs == 1 and "" or "s", type(t.refs_held) == "string" and t.refs_held or "?"),
        }
        if aw then
          evidence[#evidence + 1] = string.format("suspended at %s awaiting %s; its await chain:", at(aw) or "?", awaiting)
          for _, l in ipairs(chain_lines(t, "  ")) do evidence[#evidence + 1] = l end
        else
          awaiting = t.future
          fix = "its future returned Pending without keeping cx.waker() (clone it and call wake() when ready)"
          evidence[#evidence + 1] = string.format("its future, %s, holds no async fn: it is the future that returned Pending", t.future)
        end
        if awaiting:find("^core::future::pending::Pending") then
          evidence[#evidence + 1] = "std::future::pending() never completes by design"
          fix = "if this task should finish, await a real event (a channel, a Notify) instead of pending()"
        end
        out[#out + 1] = finding("lost_waker",
          string.format("%s waits %s and nothing can ever wake it (no waker of it exists)",
            task_label(t), aw and ("at " .. (at(aw) or "?")) or ("in " .. t.future)),
          { tasks = { task_ref(t) }, evidence = evidence, fix = fix })
      end
    end
  end
  return out
end

return { name = "lost_waker", severity = 6, run = run }
