-- tracing spans: a task's span name (from its callsite's static Metadata,
-- after the stop) and its fields (from tracing-subscriber's Registry, while
-- the target is stopped, for at most FIELDS_MAX tasks a runtime). It owns
-- caches of facts valid for the whole run: the Span type, which subscriber
-- vtables have no registry, and span names by Metadata address. The count
-- of spans read is the caller's (follow_span_fields counts per runtime).

local U = require("tokio.util")
local peel, some, slice_at = U.peel, U.some, U.slice_at

local S = {}

local FIELDS_MAX = 1000     -- tasks whose span fields are read, a snapshot (see span_fields)
S.FIELDS_MAX = FIELDS_MAX

-- A span's fields, where tracing-subscriber's registry keeps them formatted
-- (its fmt layer stores FormattedFields in the span's extensions): the
-- span's id (Span.inner: Some { id, subscriber }) is a key into the
-- registry's sharded_slab Pool (DefaultConfig: 38 bits of address in its
-- shard, then 13 of shard; a page of the shard holds addresses from its
-- prev_sz on, pages doubling from 32 slots); the slot's DataInner has the
-- extensions, a HashMap from TypeId to Box<dyn Any>, whose boxes are told
-- apart by the type their vtable drops. Read while stopped, for at most
-- FIELDS_MAX tasks a snapshot.
local REGISTRY = "tracing_subscriber::registry::sharded::Registry"
local facts = {}   -- span_t: tracing's Span type; no_registry: subscriber vtables without one

-- The bytes of a String value: its Vec's buffer pointer and len.
local function string_text(v, max)
  local function ptr_of(x, depth)
    for _, f in ipairs(td.fields(x)) do
      if (f.type or ""):find("^%*") then return td.pointer(x[f.name]) end
      if depth < 6 and f.type ~= "*" and (f.size or 0) > 0 then
        local p = td.try(ptr_of, x[f.name], depth + 1)
        if p then return p end
      end
    end
    return nil
  end
  local vec = v.vec
  local p, n = ptr_of(vec, 0), td.uint(vec.len)
  if not p or n > max then return nil end
  return td.read_bytes(p, n)
end

-- The concrete value behind a fat pointer's data and vtable: the type its
-- vtable drops (drop_in_place<T>).
local function dyn_value(data, vtable)
  local drop = td.try_read(vtable)
  local fn = drop and drop ~= 0 and td.function_at(drop)
  return fn and fn.T and td.value(fn.T, data) or nil
end

-- read: { n = spans read so far } (the caller's budget).
local function span_fields(span_addr, read)
  local st = facts
  if read.n >= FIELDS_MAX then return nil end
  read.n = read.n + 1
  st.span_t = st.span_t or td.find_type("tracing::span::Span")
  local inner = some(td.value(st.span_t, span_addr).inner)
  if not inner then return nil end
  local id = td.read(td.addr(inner.id))
  -- The subscriber: Dispatch { subscriber: Arc<dyn Subscriber> }.
  -- Arc<dyn ..>: a fat pointer (data, vtable) to the ArcInner.
  local fat = td.addr(inner.subscriber.subscriber)
  local p, vt = td.read(fat), td.read(fat + 8)
  -- Whether this subscriber's type has a registry: once per vtable.
  st.no_registry = st.no_registry or {}
  if st.no_registry[vt] then return nil end
  local align = td.read(vt + 16)
  local sub = dyn_value(p + ((16 + align - 1) // align) * align, vt)
  local reg = sub and td.find_inside(sub, REGISTRY)
  if not reg then st.no_registry[vt] = true; return nil end
  local idx = id - 1
  local addr, tid = idx & ((1 << 38) - 1), (idx >> 38) & ((1 << 13) - 1)
  local shard_ptr = slice_at(reg.spans.shards.shards, tid)
  local sp = shard_ptr and td.read(td.addr(shard_ptr))
  if not sp or sp == 0 then return nil end
  -- Ptr(AtomicPtr<Track<Shard>>): Track { value: Shard } in release builds.
  local track = td.deref(peel(shard_ptr).p.value)
  local shard = td.has(track, "value") and track.value or track
  local shifted = (addr + 32) >> 6
  local page_i = 0
  while shifted > 0 do page_i, shifted = page_i + 1, shifted >> 1 end
  local page = slice_at(shard.shared, page_i)
  local slab = page and some(peel(page.slab))
  local slot = slab and slice_at(slab, addr - td.uint(page.prev_sz))
  if not slot then return nil end
  local data = peel(slot.item)
  local map = peel(data.extensions).map
  -- hashbrown: the entries lie below ctrl, entry b at ctrl - (b + 1) * size.
  local raw = map.base.table
  local tinner = raw.table
  local mask, ctrl = td.uint(tinner.bucket_mask), td.read(td.addr(tinner.ctrl))
  local et = td.template(td.type_of(raw), "T")
  local size = td.size(et)
  for b = 0, math.min(mask, 255) do
    local c = td.try_read(ctrl + b, 1)
    if c and c < 0x80 then
      local entry = td.value(et, ctrl - (b + 1) * size)
      local box = td.addr(entry.__1)
      local any = dyn_value(td.read(box), td.read(box + 8))
      if any and (td.type_name(any) or ""):find("^FormattedFields<") then
        local text = string_text(any.fields, 1024)
        -- Without the terminal colours the fmt layer may have formatted them with.
        text = text and text:gsub("\27%[[%d;]*m", "")
        if text and text ~= "" then return text end
      end
    end
  end
  return nil
end

-- While stopped, for one runtime's lists (td.await_chains' results): the
-- fields of each task's outermost span, while the registry can be read
-- (list.span_fields[i]); at most FIELDS_MAX for the runtime.
function S.follow_span_fields(lists)
  local read = { n = 0 }
  for _, list in ipairs(lists) do
    list.span_fields = {}
    for i, span in pairs(list.tagged or U.EMPTY) do
      local ok, text = pcall(span_fields, span, read)
      list.span_fields[i] = ok and text or nil
    end
  end
end

-- A span's name, from the address of its callsite's Metadata (after the stop).
local span_names = {}
function S.span_name(meta)
  local name = span_names[meta]
  if name == nil then
    name = false
    local mt = td.find_type("tracing_core::metadata::Metadata")
    local off = mt and td.try(td.offset, mt, "name")
    if off then
      local p, n = td.try_read(meta + off), td.try_read(meta + off + 8)
      name = p and n and n > 0 and n < 256 and td.read_bytes(p, n) or false
    end
    span_names[meta] = name
  end
  return name or nil
end

return S
