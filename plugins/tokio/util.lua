-- Small helpers every part of the tokio plugin shares: reading through std's
-- and tokio's wrappers, Options, type paths, paths of offsets for td.follow,
-- and resource keys. It owns one cache of DWARF facts, valid for the whole
-- run: the way down through wrappers, per type id (peel). No per-stop state.

local U = {}

U.EMPTY = {}

-- The fields of v that take space (PhantomData and () take none), by name.
local function fieldset(v)
  local set, n, only = {}, 0, nil
  for _, f in ipairs(td.fields(v)) do
    set[f.name] = true
    if f.size ~= 0 then n = n + 1; only = f.name end
  end
  return set, n, only
end
U.fieldset = fieldset

-- Peels std and tokio wrappers (Cell, UnsafeCell, RefCell, MaybeUninit,
-- ManuallyDrop, mutexes, newtypes) down to the value they hold. The way down
-- is worked out once per type (td.fields builds a table: not in a hot path).
local peel_steps = {}
function U.peel(v)
  local id = td.id(v)
  local steps = peel_steps[id]
  if not steps then
    steps = {}
    local w = v
    for _ = 1, 32 do
      local f, n, only = fieldset(w)
      local step
      if f.data and (f.raw or f.poison) then step = "data"
      elseif f.value and f.borrow then step = "value"
      elseif n == 1 and (only == "value" or only:find("^__%d+$")) then step = only end
      if not step then break end
      steps[#steps + 1] = step
      w = w[step]
    end
    peel_steps[id] = steps
  end
  for i = 1, #steps do v = v[steps[i]] end
  return v
end

function U.some(option)
  local payload, name = td.variant(option)
  if name == "Some" then return payload.__0 end
  return nil
end

-- The value a std thread-local's storage holds, or nil when it is not
-- initialised yet or already destroyed. std's layouts over the years:
--   `state` (Initial/Alive/Destroyed) and `value`/`val` (Rust >= 1.70 or so);
--   fast::Key { inner: LazyKeyInner { inner: UnsafeCell<Option<T>> },
--   dtor_state: Unregistered/Registered/RunningOrHasRun } (Rust 1.63, Debian 12's);
--   a const-initialised key: the value itself (`val`, a Cell's `value`, or
--   on Rust 1.63 the VAL static with no wrapper at all).
function U.tls_value(storage)
  if td.has(storage, "state") then
    local _, state = td.variant(U.peel(storage.state))
    if state ~= "Alive" then return nil end
    return U.peel(td.has(storage, "value") and storage.value or storage.val)
  end
  if td.has(storage, "dtor_state") then
    local _, dtor = td.variant(U.peel(storage.dtor_state))
    if dtor == "RunningOrHasRun" then return nil end
    return U.some(U.peel(storage.inner.inner))
  end
  if td.has(storage, "val") then return U.peel(storage.val) end
  if td.has(storage, "value") then return U.peel(storage.value) end
  -- Rust 1.63's const-initialised key: a VAL static of the value itself
  -- (task::local::CURRENT's LocalData).
  return storage
end

-- Rust before 1.67 (Debian 12's 1.63) wraps each async body's state machine
-- in core::future::from_generator::GenFuture<T>, a newtype newer compilers
-- do not have: a path names T in its place, as a newer build would, so that
-- names are the same whichever rustc built the program.
local GEN = "core::future::from_generator::GenFuture<"
function U.without_generator_wrappers(path)
  local at = path:find(GEN, 1, true)
  while at do
    local depth, i, close = 1, at + #GEN, nil
    while i <= #path do
      local c = path:sub(i, i)
      if c == "<" then depth = depth + 1
      elseif c == ">" then
        depth = depth - 1
        if depth == 0 then close = i; break end
      end
      i = i + 1
    end
    if not close then break end
    path = path:sub(1, at - 1) .. path:sub(at + #GEN, close - 1) .. path:sub(close + 1)
    at = path:find(GEN, at, true)
  end
  return path
end

function U.type_path(v)
  local path = td.qualified_name(v) or td.type_name(v) or "?"
  if path:find(GEN, 1, true) then path = U.without_generator_wrappers(path) end
  return path
end

-- Arc<T> -> T, NonNull<T> -> *T
function U.arc_data(arc) return td.deref(arc.ptr.pointer).data end

-- Element i of a Box<[T]> / &[T] value.
function U.slice_at(v, i)
  local len = td.uint(v.length)
  if i < 0 or i >= len then return nil end
  local et = td.pointee(td.type_of(v.data_ptr))
  return td.value(et, td.pointer(v.data_ptr) + i * td.size(et))
end

-- The steps of an Arc<T> to its T, for recipe.
U.ARC = { "ptr", "pointer", "*", "data" }

-- Steps for td.follow along a path of field names, "*" (through a pointer)
-- and "?" (into Option<T>'s payload: pointers use the null niche); also the
-- type reached.
function U.recipe(t, ...)
  local steps, acc = {}, 0
  for _, path in ipairs({ ... }) do
    for _, step in ipairs(path) do
      if step == "*" then
        steps[#steps + 1] = acc
        steps[#steps + 1] = -1
        acc = 0
        t = td.pointee(t)
      elseif step == "?" then
        t = td.template(t, "T") or error(td.error("not_found", "not an Option: " .. U.type_path(t)))
      else
        local off, ft = td.offset(t, step)
        acc, t = acc + off, ft
      end
    end
  end
  steps[#steps + 1] = acc
  return steps, t
end

function U.has_field(t, name) return td.try(td.offset, t, name) ~= nil end

local hex = td.hex
U.hex, U.ptr = hex, td.ptr
-- A resource key: "chan:0x..".
function U.fmt(prefix, a) return hex(a, prefix .. ":") end

return U
