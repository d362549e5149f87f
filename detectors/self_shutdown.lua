-- self_shutdown: a runtime being shut down (dropped, shutdown_timeout) from a
-- place the shutdown itself waits for.
--   1. dropped inside one of its own blocking threads (a spawn_blocking
--      closure): the blocking pool's shutdown waits for every pool thread to
--      finish, this one included, forever;
--   2. dropped by a thread while threads of its blocking pool (spawn_blocking
--      closures, and the workers of a multi-thread runtime, which run on that
--      pool) are blocked in the user's code: the shutdown waits for them, and
--      they typically wait for what the shutting-down thread would do after it
--      (send on a channel, set a flag, release a lock). Live, both sides must
--      have sat in the same system call (and futex word) in every sample of
--      the window, so a shutdown that merely waits for a short closure to
--      finish is not reported.
-- Found from the stacks: the runtime's shutdown frames and the frames of its
-- blocking pool, as the plugin declares them (frames.shutdown, frames.blocking). Which pool a thread runs in, and
-- which one a shutdown waits for, come from their frames' variables
-- (ctx.blocking_pools, from the plugin): with several runtimes, a shutdown
-- waits only for the threads of its own pool.

local lib = require("_lib")
local runtime_frame, user_call, short_fn, fn_of, at = lib.runtime_frame, lib.user_call, lib.short_fn, lib.fn_of, lib.at
local is_library_frame, thread_label, finding = lib.is_library_frame, lib.thread_label, lib.finding

-- The outermost frame of the user's own code: on a blocking-pool thread, the
-- spawn_blocking closure (or, on a worker, the task's future) it runs.
local function outermost_user(th)
  local frames = th.frames or {}
  for i = #frames, 1, -1 do
    if not is_library_frame(frames[i]) then return frames[i] end
  end
  return nil
end

-- Live: the thread sat in the same system call, on the same futex word, in
-- every sample of the window. A core is one snapshot: taken as is.
local function stuck(ctx, th)
  if not ctx.options.live then return true end
  if #ctx.samples < 2 then return false end
  local first
  for _, s in ipairs(ctx.samples) do
    local t = s.threads[th.tid]
    if not t or not t.syscall then return false end
    first = first or t
    if t.syscall ~= first.syscall or t.futex ~= first.futex then return false end
  end
  return true
end

-- "crate::f at src/main.rs:12" of a frame.
local function fn_at(f)
  if not f then return "?" end
  return string.format("%s at %s", short_fn(fn_of(f)), at(f) or "?")
end

-- The threads of a blocking pool blocked in the user's code, with what they
-- are blocked in: { th, user, api, closure }. Only the pool being shut down,
-- where both pools are known.
local function blocked_pool_threads(ctx, ix, shutting)
  local out = {}
  local pools = ctx.blocking_pools or {}
  local shuts = (pools[shutting.tid] or {}).shuts
  for _, other in ipairs(ctx.threads) do
    local runs = (pools[other.tid] or {}).runs
    if other ~= shutting and other.syscall and runtime_frame(ix, other, "blocking")
       and not (shuts and runs and shuts ~= runs) then
      local u, api = user_call(other, nil)
      if u and stuck(ctx, other) then
        out[#out + 1] = { th = other, user = u, api = api, closure = outermost_user(other) }
      end
    end
  end
  return out
end

local function blocked_in(b)
  return b.api and short_fn(fn_of(b.api)) or b.th.syscall
end

local function run(ctx, ix)
  local out = {}
  for _, th in ipairs(ctx.threads) do
    local s = runtime_frame(ix, th, "shutdown")
    if s and th.syscall then
      -- Where the user's code started the shutdown: the first user frame outside it.
      local user
      for i = s + 1, #(th.frames or {}) do
        if not is_library_frame(th.frames[i]) then user = th.frames[i]; break end
      end
      local where = user and at(user) or "?"
      local waits_in = short_fn(fn_of(th.frames[s]))
      local pool = (ctx.blocking_pools or {})[th.tid] or {}
      if runtime_frame(ix, th, "blocking") and not (pool.runs and pool.shuts and pool.runs ~= pool.shuts) then
        out[#out + 1] = finding("self_shutdown",
          string.format("a runtime is dropped inside one of its own blocking threads (%s, at %s): its shutdown waits for this very thread",
            thread_label(th), where),
          { threads = { th.tid }, evidence = {
              string.format("%s runs a spawn_blocking closure of the runtime and, in it, drops the runtime at %s (%s)",
                thread_label(th), where, user and short_fn(fn_of(user)) or "?"),
              string.format("the shutdown waits in %s until every blocking thread has finished, this one included",
                waits_in),
            },
            fix = "shut the runtime down from outside it (from main, after block_on returns), or use Runtime::shutdown_background" })
      elseif stuck(ctx, th) then
        -- Form 2: threads of the pool stuck in the user's code, which the
        -- shutdown waits for.
        local blocked = blocked_pool_threads(ctx, ix, th)
        if #blocked > 0 then
          local threads, names, evidence = { th.tid }, {}, {
            string.format("%s shuts the runtime down in %s and waits in %s until every thread of its blocking pool has finished",
              thread_label(th), fn_at(user), waits_in),
          }
          for _, b in ipairs(blocked) do
            threads[#threads + 1] = b.th.tid
            names[#names + 1] = string.format("%s, blocked in %s in %s", thread_label(b.th), blocked_in(b),
              fn_at(b.user))
            local what
            if b.th.role == "worker" then
              what = string.format("a worker of the runtime, polling %s", fn_at(b.closure))
            else
              what = string.format("a blocking thread of the runtime running the spawn_blocking closure %s",
                fn_at(b.closure))
            end
            evidence[#evidence + 1] = string.format("%s, %s, is blocked in %s (%s) in %s", thread_label(b.th),
              what, blocked_in(b), b.th.syscall, fn_at(b.user))
          end
          evidence[#evidence + 1] = string.format(
            "the shutdown returns only when %s; if what %s for comes from %s after the shutdown, neither ever moves",
            #blocked == 1 and "that thread returns" or "those threads return",
            #blocked == 1 and "it waits" or "they wait", thread_label(th))
          if ctx.options.live then
            evidence[#evidence + 1] = string.format("%s sat in the same system call in each of the %d samples of the %d ms window",
              #threads == 2 and "both threads" or string.format("all %d threads", #threads),
              #ctx.samples, ctx.options.window_ms)
          end
          out[#out + 1] = finding("self_shutdown",
            string.format("%s shuts a runtime down in %s and waits for %s",
              thread_label(th), fn_at(user), table.concat(names, "; ")),
            { threads = threads, evidence = evidence,
              fix = "tell the runtime's blocking closures and tasks to stop (send their stop message, drop their Sender, set their flag) before dropping the runtime, or use Runtime::shutdown_timeout / shutdown_background so the shutdown does not wait for them forever" })
        end
      end
    end
  end
  return out
end

return { name = "self_shutdown", severity = 2, run = run }
