-- The model finish() returns (docs/cli-contract.md), built after the target
-- runs again from what the walk kept (tokio/tasks.lua) and the stop's
-- stacks: names from DWARF, AWAIT backtraces (shared between tasks waiting
-- at the same place), holds and waiting_on as resource records, each TASK
-- record, and the block_on futures of threads (tokio/block_on.lua). It
-- owns no state: its caches of names live for one finish().

local U = require("tokio.util")
local T = require("tokio.tasks")
local R = require("tokio.resources")
local S = require("tokio.spans")
local B = require("tokio.block_on")
local type_path, EMPTY, ptr = U.type_path, U.EMPTY, U.ptr
local state_name, vtables, follow_join_handles, JOIN_INTEREST = T.state_name, T.vtables, T.follow_join_handles, T.JOIN_INTEREST
local resource_record, leaf_waits, resolve_chain = R.resource_record, R.leaf_waits, R.resolve_chain
local span_name = S.span_name
local pinned_futures, follow_run_until = B.pinned_futures, B.follow_run_until

local F = {}

local strip_generics = td.strip_generics   -- "a::B<c::D>::f" -> "a::B::f"

-- The name a person would call a future (docs/cli-contract.md).
local function future_name(full)
  local name = strip_generics(full)
  return (name:gsub("::{async_fn_env#%d+}$", ""))
end

-- After the target runs again: names, from DWARF alone, once per type.
-- stop: the plugin's M.stop (stop.result: the walk's model in the making).
-- options: what the host asks for (M.options): progress, a digest of each
-- task's future (a session tells a task that moved from one that did not).
function F.finish(stop, options)
  local result, now_ms = stop.result, stop.now_ms
  local want_progress = options and options.progress
  local full_by_id, short_by_id = {}, {}
  local function names_of_id(id)
    local full = full_by_id[id]
    if not full then
      full = type_path(td.type_by_id(id))
      full_by_id[id], short_by_id[id] = full, future_name(full)
    end
    return full, short_by_id[id]
  end
  -- block_on's own futures, on the threads that run them (after the stop:
  -- they are found through the copied stacks).
  local tids, pinned = {}, {}
  for tid in pairs(result.thread_runtime or EMPTY) do tids[#tids + 1] = tid end
  table.sort(tids)
  for _, tid in ipairs(tids) do
    for _, p in ipairs(pinned_futures(stop, tid)) do
      follow_run_until(p, tid, stop.late)
      pinned[#pinned + 1] = { tid = tid, p = p }
    end
  end
  local id_of_header, shared_backtraces = {}, {}
  for _, rt in ipairs(result.runtimes) do
    for _, list in ipairs(rt.lists) do
      for i, header in ipairs(list.cols.node) do id_of_header[header] = list.cols.id[i] end
    end
  end
  -- A future's backtrace (AWAIT objects, shared between futures waiting at the
  -- same place), what its suspended states hold, and what it waits on (a
  -- lock, a channel), unless it is running.
  -- The outermost async fn of the program's own code in a backtrace (for a
  -- hyper connection: the request handler), looking into a tree's branches
  -- when the chain itself has none. Once per backtrace table (shared ones too).
  local roots = setmetatable({}, { __mode = "k" })
  local function root_of(backtrace, depth)
    local r = roots[backtrace]
    if r ~= nil then return r end
    r = false
    for _, aw in ipairs(backtrace) do
      if aw.own and aw.name then r = aw.name; break end
    end
    if not r and (depth or 0) < 4 then
      for _, aw in ipairs(backtrace) do
        for _, child in ipairs(aw.children or EMPTY) do
          r = root_of(child, (depth or 0) + 1)
          if r then break end
        end
        if r then break end
      end
    end
    roots[backtrace] = r
    return r
  end
  local describe
  -- The span a task's own future is instrumented with.
  local function chain_span(chain)
    return chain and chain.root_tag and span_name(chain.root_tag) or nil
  end
  -- An .await written inside select!/join!: the user's line calling the macro.
  local sites = {}
  local function site_of(aw)
    if not aw.in_macro then return aw.file, aw.line end
    local key = aw.type .. aw.state
    local site = sites[key]
    if not site then
      local file, line = td.macro_site(aw.type, aw.state)
      site = file and { file, line } or { aw.file, aw.line }
      sites[key] = site
    end
    return site[1], site[2]
  end
  local function await_record(aw)
    local _, short = names_of_id(aw.type)
    local file, line = site_of(aw)
    return { name = short, state = aw.state, file = file or td.null,
             line = line or td.null, own = aw.own or nil,   -- the program's own source (C: debuginfo/source.h)
             span = aw.tag and span_name(aw.tag) or nil,
             awaiting = aw.awaiting and (names_of_id(aw.awaiting)) or td.null,
             awaiting_task = aw.awaiting_header and id_of_header[aw.awaiting_header] or nil }
  end
  -- A level's children (select!/join! branches) as AWAIT chains, each
  -- innermost one with what it waits on; a finished join! branch (MaybeDone's
  -- Done or Gone) is left out. What the branches hold goes to holds.
  local function describe_children(level, state, holds, held_at, depth)
    local out, all = setmetatable({}, { __array = true }), false
    for _, c in ipairs(level.children) do
      local elem = names_of_id(c.elem)
      if elem:find("MaybeDone<") or level.wait_all then all = true end
      if c.variant ~= "Done" and c.variant ~= "Gone" and not c.disabled then
        local bt, waiting_on
        if c.chain then
          local child_holds
          bt, child_holds, waiting_on = describe(c.chain, c.waits, state, true)
          for _, h in ipairs(child_holds or EMPTY) do
            if not held_at[h.address] then
              held_at[h.address] = true
              h.level = depth
              holds[#holds + 1] = h
            end
          end
        else
          local _, short = names_of_id(c.leaf_type)
          bt = setmetatable({ { name = short, state = td.null, file = td.null, line = td.null,
                                awaiting = td.null } }, { __array = true })
          waiting_on = c.waits and state ~= "running" and resource_record(c.waits, bt, now_ms) or nil
        end
        if #bt > 0 then
          bt[#bt].waiting_on = waiting_on
          out[#out + 1] = bt
        end
      end
    end
    return out, all and "all" or "any"
  end
  -- fresh: the records are made anew (a child chain's innermost record gets
  -- its own waiting_on), not shared with other futures waiting at the same place.
  describe = function(chain, waits, state, fresh)
    local key = chain
    local tree = false
    if not chain.shared then
      key = {}
      for i, aw in ipairs(chain) do
        key[i] = aw.type .. aw.state .. (aw.awaiting or "") .. "/" .. (aw.awaiting_header or "") .. "/" .. (aw.tag or "")
        tree = tree or aw.children ~= nil
      end
      key = table.concat(key, ";")
    end
    local backtrace = not (fresh or tree) and shared_backtraces[key]
    if not backtrace then
      backtrace = setmetatable({}, { __array = true })
      for i, aw in ipairs(chain) do backtrace[i] = await_record(aw) end
      if not (fresh or tree) then shared_backtraces[key] = backtrace end
    end
    -- What its suspended futures hold: handles to tasks, guards, channel ends
    -- (a chain that holds anything is never shared).
    local holds, held_at
    for i, aw in ipairs(chain.shared and EMPTY or chain) do
      for _, held in ipairs(aw.holds or EMPTY) do
        held_at = held_at or {}
        if not held_at[held.addr] then
          held_at[held.addr] = true
          holds = holds or {}
          local res = held.resource
          holds[#holds + 1] = {
            type = (names_of_id(held.type)), address = ptr(held.addr),
            name = held.name, level = i - 1,
            task = held.header and id_of_header[held.header] or nil,
            resource = res and resource_record(res, backtrace, now_ms) or nil }
        end
      end
      if aw.children then
        holds, held_at = holds or {}, held_at or {}
        backtrace[i].children, backtrace[i].wait = describe_children(aw, state, holds, held_at, i - 1)
        backtrace[i].branches = #aw.children + (aw.more or 0)
        backtrace[i].more = (aw.more or 0) > 0 and aw.more or nil
        if #holds == 0 then holds = nil end
      end
    end
    local waiting_on = waits and state ~= "running" and resource_record(waits, backtrace, now_ms) or nil
    if waiting_on and waiting_on.headers then
      -- A JoinSet: the ids of the tasks it joins.
      local ids = setmetatable({}, { __array = true })
      for _, h in ipairs(waiting_on.headers) do ids[#ids + 1] = id_of_header[h] end
      table.sort(ids)
      waiting_on.tasks, waiting_on.headers = ids, nil
    end
    return backtrace, holds, waiting_on
  end
  -- A future's full and short names, once per task vtable.
  -- A boxed future (Pin<Box<F>>, as tokio >= 1.41 spawns big ones, or a
  -- Pin<Box<dyn Future>>) is named after the future in the box, the first
  -- level of its chain (td.await_chain looks through boxes).
  local names_of_vtable = setmetatable({}, { __index = function(t, vt)
    local info = vtables[vt]
    local names = { "?", "?" }
    if info and info.future then names = { names_of_id(td.id(info.future)) } end
    names.boxed = names[1]:find("^core::pin::Pin<") or names[1]:find("^alloc::boxed::Box<")
    t[vt] = names
    return names
  end })
  local running_on = result.running_on or EMPTY
  -- Each record is made in one table constructor (a record grown key by key
  -- rehashes as it grows: a third of the cost at 100,000 tasks).
  for _, rt in ipairs(result.runtimes) do
    local tasks, n = setmetatable({}, { __array = true }), 0
    for _, list in ipairs(rt.lists) do
      local cols, chains, errors = list.cols, list.chains, list.errors
      local waits, bulk = list.waits or EMPTY, list.bulk or EMPTY
      local node, bits_of, vtable, ids = cols.node, cols.state, cols.vtable, cols.id
      for i = 1, #node do
        local bits, id = bits_of[i], ids[i]
        local state = state_name(bits)
        local names = names_of_vtable[vtable[i]]
        local w = waits[i]
        for k = 1, w and 0 or #bulk do
          local x = bulk[k].got[i]
          if x then w = bulk[k].make(x); break end
        end
        local backtrace, holds, waiting_on = describe(chains[i] or EMPTY, w, state)
        n = n + 1
        tasks[n] = {
          id = id, state = state, state_bits = bits, refs = bits >> 6,
          address = ptr(node[i]),
          future = names[1], name = names.boxed and backtrace[1] and backtrace[1].name or names[2],
          running_on = running_on[id] or td.null,
          spawned_at = td.null,   -- recorded by tokio only with tokio_unstable
          backtrace = backtrace, holds = holds, waiting_on = waiting_on, error = errors[i],
          root = root_of(backtrace) or td.null,
        }
        -- (Set only where there is one: every key of the constructor takes room in every record.)
        local span = chains[i] and chains[i].root_tag and chain_span(chains[i])
        if span then tasks[n].span = span end
        local fields = list.span_fields and list.span_fields[i]
        if fields then tasks[n].span_fields = fields end
        if want_progress then
          local info = vtables[vtable[i]]
          if info and info.stage_offset and info.stage_size then
            tasks[n].progress = td.try(td.digest, node[i] + info.stage_offset, info.stage_size)
          end
        end
        local limit = list.timeouts and list.timeouts[i]
        if limit then tasks[n].timeout = resource_record(limit, nil, now_ms) end
        -- An idle task's wakers: its references less its runtime's (one) and
        -- its JoinHandle's (while JOIN_INTEREST is set). Said only when none.
        if state == "idle" then
          local joined = bits & JOIN_INTEREST ~= 0
          local wakers = (bits >> 6) - (joined and 2 or 1)
          if wakers <= 0 then
            tasks[n].wakers = wakers
            tasks[n].refs_held = joined and "its runtime's and its JoinHandle's" or "its runtime's"
          end
        end
      end
    end
    rt.lists = nil
    -- tokio pushes new tasks at the head: a list is usually newest-first,
    -- and reversing it is much cheaper than sorting.
    local descending = true
    for i = 2, n do
      if tasks[i - 1].id <= tasks[i].id then descending = false; break end
    end
    if descending then
      for i = 1, n // 2 do tasks[i], tasks[n - i + 1] = tasks[n - i + 1], tasks[i] end
    else
      table.sort(tasks, function(a, b) return a.id < b.id end)
    end
    rt.tasks = tasks
  end
  local polls_task = {}
  for _, tid in pairs(result.running_on or EMPTY) do polls_task[tid] = true end
  for _, entry in ipairs(pinned) do
    local tid, p = entry.tid, entry.p
    local rt = result.thread_runtime[tid]
    -- An async body polled under block_on is its future's, unless a task is.
    local b = { thread = tid, address = ptr(p.address),
                state = p.running and not polls_task[tid] and "running" or "idle" }
    follow_join_handles({ { chains = { p.chain } } })
    b.future, b.name = names_of_id(td.id(p.type))
    local waits = leaf_waits(p.chain, p.leaf)
    resolve_chain(p.chain)
    b.backtrace, b.holds, b.waiting_on = describe(p.chain, waits, b.state)
    b.root = root_of(b.backtrace) or td.null
    b.span = chain_span(p.chain)
    rt.block_on = rt.block_on or setmetatable({}, { __array = true })
    rt.block_on[#rt.block_on + 1] = b
  end
  result.running_on = nil
  result.thread_runtime = nil
  return result
end


return F
