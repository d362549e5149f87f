-- Which threads are inside a tokio runtime, and which task each is polling,
-- read straight from tokio's CONTEXT thread-local. These are raw ids: a
-- worker between polls reports the blocking-pool task that runs its loop,
-- and a spawn_blocking thread its own task (`taskdbg tasks` filters them).
--   taskdbg run scripts/runtime-threads.lua PID|CORE
local function peel(v)
  for _ = 1, 16 do
    local fields = td.fields(v)
    local only, n = nil, 0
    for _, f in ipairs(fields) do if f.size ~= 0 then n = n + 1; only = f.name end end
    if n == 1 and (only == "value" or only:find("^__%d+$")) then v = v[only] else return v end
  end
  return v
end

local out = {}
for _, t in ipairs(td.threads()) do
  local row = { tid = t.tid, name = t.name or td.null, in_runtime = false, task = td.null }
  local storage = td.tls("tokio::runtime::context::CONTEXT", t.tid)
  -- std's thread-local storage: Storage { state, value|val } (Rust >= 1.70
  -- or so), or Rust 1.63's fast::Key { inner: { inner: Option<T> }, dtor_state }.
  local ctx
  if storage and td.has(storage, "state") then
    local _, state = td.variant(peel(storage.state))
    if state == "Alive" then ctx = peel(td.has(storage, "val") and storage.val or storage.value) end
  elseif storage and td.has(storage, "dtor_state") then
    local _, dtor = td.variant(peel(storage.dtor_state))
    local value, some = td.variant(peel(storage.inner.inner))
    if dtor ~= "RunningOrHasRun" and some == "Some" then ctx = value.__0 end
  end
  if ctx then
    -- tokio < 1.29: a lazy Storage { value } and Context.handle; later an
    -- eager Storage { val } and Context.current: HandleCell { handle }.
    local cell = td.has(ctx, "handle") and ctx.handle or ctx.current.handle
    local _, handle = td.variant(peel(cell.value))
    row.in_runtime = handle == "Some"
    local id, some = td.variant(peel(ctx.current_task_id))
    if some == "Some" then row.task = td.uint(peel(id.__0)) end
  end
  out[#out + 1] = row
end
return out
