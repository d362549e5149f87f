-- lost_waker: a pending task that nothing can ever wake.
--
-- A tokio task is reference-counted: its runtime's list holds one reference,
-- its JoinHandle one (while the JOIN_INTEREST bit is set), and every Waker of
-- it one more. An idle task (polled, pending, not notified) whose count has
-- nothing left for a Waker has no waker anywhere: no timer, I/O source,
-- channel or lock can wake it, and it waits forever.
-- Facts: docs/tokio-layout-notes.md (state word).

local JOIN_INTEREST = 0x08

detectors.lost_waker = function(ctx, ix)
  local out = {}
  local ids = {}
  for id in pairs(ix.tasks) do ids[#ids + 1] = id end
  table.sort(ids)
  for _, id in ipairs(ids) do
    local t = ix.tasks[id]
    local bits = t.state_bits
    local aw = innermost(t)
    -- Polled at least once: it is suspended at an .await (not Unresumed).
    local suspended = aw and type(aw.state) == "string" and aw.state:find("^Suspend") ~= nil
    if t.state == "idle" and bits and suspended then
      local refs = bits >> 6
      local expected = 1 + ((bits & JOIN_INTEREST) ~= 0 and 1 or 0)
      local wakers = refs - expected
      if wakers <= 0 then
        local awaiting = type(aw.awaiting) == "string" and strip_generics(aw.awaiting) or "?"
        local evidence = {
          string.format("%s is idle with %d reference%s: %s, none for a waker",
            task_label(t), refs, refs == 1 and "" or "s",
            expected == 2 and "its runtime's and its JoinHandle's" or "its runtime's"),
          string.format("suspended at %s awaiting %s; its await chain:", at(aw) or "?", awaiting),
        }
        for _, l in ipairs(chain_lines(t, "  ")) do evidence[#evidence + 1] = l end
        local fix = "the future it awaits returned Pending without keeping cx.waker() (clone it and call wake() when ready)"
        if awaiting:find("^core::future::pending::Pending") then
          evidence[#evidence + 1] = "std::future::pending() never completes by design"
          fix = "if this task should finish, await a real event (a channel, a Notify) instead of pending()"
        end
        out[#out + 1] = finding("lost_waker",
          string.format("%s waits at %s and nothing can ever wake it (no waker of it exists)",
            task_label(t), at(aw) or "?"),
          { tasks = { task_ref(t) }, evidence = evidence, fix = fix })
      end
    end
  end
  return out
end
