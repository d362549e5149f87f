-- self_shutdown: a runtime being shut down (dropped, shutdown_timeout) from a
-- place the shutdown itself waits for.
--   1. dropped inside one of its own blocking threads (a spawn_blocking
--      closure): the blocking pool's shutdown waits for every pool thread to
--      finish, this one included, forever;
--   2. dropped by a thread while a blocking thread or a worker of the runtime
--      is blocked in the user's code: the shutdown waits for that thread,
--      which (typically) waits for the very thread shutting down.
-- Found from the stacks: tokio's shutdown frames, and the frames of its
-- blocking pool (blocking::pool::Inner::run).

local SHUTDOWN = {
  "^tokio::runtime::blocking::pool::BlockingPool::shutdown",
  "^tokio::runtime::blocking::shutdown::Receiver::wait",
  "Runtime as core::ops::drop::Drop>::drop",
  "^tokio::runtime::runtime::Runtime::shutdown_timeout",
  "^tokio::runtime::scheduler::multi_thread::worker::Shared::close",
}

local function frame_index(th, patterns)
  for i, f in ipairs(th.frames or {}) do
    local fn = fn_of(f)
    for _, p in ipairs(patterns) do
      if fn:find(p) then return i end
    end
  end
  return nil
end

local POOL = { "^tokio::runtime::blocking::pool::Inner::run" }

detectors.self_shutdown = function(ctx, ix)
  local out = {}
  for _, th in ipairs(ctx.threads) do
    local s = frame_index(th, SHUTDOWN)
    if s and th.syscall then
      -- Where the user's code started the shutdown: the first user frame outside it.
      local user
      for i = s + 1, #(th.frames or {}) do
        if not is_library_frame(th.frames[i]) then user = th.frames[i]; break end
      end
      local where = user and at(user) or "?"
      if frame_index(th, POOL) then
        out[#out + 1] = finding("self_shutdown",
          string.format("a runtime is dropped inside one of its own blocking threads (%s, at %s): its shutdown waits for this very thread",
            thread_label(th), where),
          { threads = { th.tid }, evidence = {
              string.format("%s runs a spawn_blocking closure of the runtime and, in it, drops the runtime at %s (%s)",
                thread_label(th), where, user and short_fn(fn_of(user)) or "?"),
              string.format("the shutdown waits in %s until every blocking thread has finished, this one included",
                short_fn(fn_of(th.frames[s]))),
            },
            fix = "shut the runtime down from outside it (from main, after block_on returns), or use Runtime::shutdown_background" })
      else
        -- Form 2: other threads of the runtime stuck in the user's code.
        for _, other in ipairs(ctx.threads) do
          if other ~= th and other.syscall and (frame_index(other, POOL) or other.role == "worker") then
            local u, api = user_call(other, nil)
            if u then
              out[#out + 1] = finding("self_shutdown",
                string.format("%s shuts a runtime down at %s and waits for %s, which is blocked in %s at %s",
                  thread_label(th), where, thread_label(other),
                  api and short_fn(fn_of(api)) or other.syscall, at(u) or "?"),
                { threads = { th.tid, other.tid }, evidence = {
                    string.format("%s waits in %s for the runtime's threads to finish", thread_label(th),
                      short_fn(fn_of(th.frames[s]))),
                    string.format("%s is blocked in %s (%s) at %s (%s)", thread_label(other),
                      api and short_fn(fn_of(api)) or other.syscall, other.syscall, at(u) or "?",
                      short_fn(fn_of(u))),
                  },
                  fix = "let the runtime's tasks and blocking closures finish before dropping it (signal them to stop first), or use shutdown_timeout / shutdown_background" })
            end
          end
        end
      end
    end
  end
  return out
end
