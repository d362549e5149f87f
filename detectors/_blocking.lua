-- Threads blocked in a system call inside a poll: what blocking_in_async
-- reports and what starvation counts as a worker that cannot poll.
-- A module (require("_blocking")).

local lib = require("_lib")
local M = {}

-- Blocking system calls, and what a thread in one does.
M.BLOCKING = {
  nanosleep = "sleeps", clock_nanosleep = "sleeps", read = "reads", pread64 = "reads",
  readv = "reads", write = "writes", pwrite64 = "writes", writev = "writes",
  futex = "waits on a lock or condition variable", poll = "polls", ppoll = "polls",
  select = "selects", pselect6 = "selects", wait4 = "waits for a process",
  waitid = "waits for a process", accept = "accepts", accept4 = "accepts",
  connect = "connects", recvfrom = "receives", recvmsg = "receives", sendto = "sends",
  sendmsg = "sends", open = "opens a file", openat = "opens a file", flock = "locks a file",
  fsync = "syncs a file", fdatasync = "syncs a file", epoll_wait = "waits for events",
  epoll_pwait = "waits for events", sched_yield = "yields the CPU",
}

local BLOCKING = M.BLOCKING

-- The blocking system call a thread sits in while it polls task_id (nil:
-- block_on), and on a live target how often it was seen there. Live, the
-- samples of its current poll count (the same task at the same scheduler
-- tick, back from the last sample): it is blocked if it was in a blocking
-- call in most of them (at least two). A thread that blocks in a loop (a
-- sleep, a lock taken again and again) is now and then caught between two
-- calls, or on its way back into one interrupted by the previous stop
-- (restart_syscall): one such sample, or a final stop that lands there, must
-- not hide it. Returns the call, the samples blocked, the samples of the poll.
local function blocked_in_poll(ctx, th, task_id)
  if not ctx.options.live then
    return th.syscall and BLOCKING[th.syscall] and th.syscall or nil
  end
  local n = #ctx.samples
  local last = n > 0 and ctx.samples[n].threads[th.tid]
  if not last or last.task ~= task_id then return nil end
  local run, blocked, seen = 0, 0, {}
  for i = n, 1, -1 do
    local s = ctx.samples[i].threads[th.tid]
    if not s or s.task ~= last.task or s.tick ~= last.tick then break end
    run = run + 1
    if s.syscall and (BLOCKING[s.syscall] or s.syscall == "restart_syscall") then
      blocked = blocked + 1
      if BLOCKING[s.syscall] then seen[s.syscall] = (seen[s.syscall] or 0) + 1 end
    end
  end
  if run < 2 or blocked * 2 <= run then return nil end
  -- Named as the final stop saw it, else as the samples most often did.
  local call = th.syscall and BLOCKING[th.syscall] and th.syscall
  if not call then
    for name, k in pairs(seen) do
      if not call or k > seen[call] or (k == seen[call] and name < call) then call = name end
    end
  end
  return call, blocked, run
end

-- Where a thread that is blocked (blocked_in_poll) made the call, inside a
-- task poll or block_on: the user frame, the library call, the kind of entry
-- and the task; nil if no user code is between the call and the poll.
local function blocking_call(th, ix)
  local entry, how = lib.poll_entry(ix, th)
  if not entry then return nil end
  local task = ix.polling[th.tid]
  if how == "task" and not task then return nil end
  -- A spawn_blocking closure runs as a task too, on the blocking pool: blocking is its job.
  if how == "task" and lib.declared_name(ix, "blocking_task", task.name) then
    return nil
  end
  if how == "block_on" then task = nil end
  -- The runtime parking inside block_on (the future is pending) is no blocking call.
  local user, api = lib.user_call(th, entry)
  if not user then return nil end
  return user, api, how, task
end

-- The blocking call a thread is in while polling a task or running a block_on
-- future (see blocked_in_poll), or nil: { user =, api =, how =, task =,
-- syscall =, blocked =, run = }.
function M.blocked_poll(ctx, th, ix)
  local polled = ix.polling[th.tid]
  local syscall, blocked, run = blocked_in_poll(ctx, th, polled and polled.id)
  if not syscall then return nil end
  local user, api, how, task = blocking_call(th, ix)
  if not user then return nil end
  return { user = user, api = api, how = how, task = task, syscall = syscall, blocked = blocked, run = run }
end

return M
