#!lua flags=no-writes
-- A channel's state and its retained events after a sequence, in one consistent look.
--
-- KEYS: meta (hash), log (stream) of one channel (one hash tag, so one slot).
-- ARGV: after, limit (0 for the state only), retention_events, retention_ms.
-- Returns {} when the channel has no log, else
-- {epoch, base, first, last, closed (0 while open), then seq, time_ms, type, data per event}.
local meta, log = KEYS[1], KEYS[2]
local after, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local retention, retention_ms = tonumber(ARGV[3]), tonumber(ARGV[4])

local m = redis.call('HMGET', meta, 'epoch', 'base', 'last', 'closed')
if not m[1] then
  return {}
end
local base, last = tonumber(m[2]), tonumber(m[3])
local clock = redis.call('TIME')
local horizon = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000) - retention_ms

local function id(seq)
  return string.format('%d-%d', base, seq)
end
local function seq_of(entry)
  return tonumber(string.match(entry[1], '%-(%d+)$'))
end
local function alive(entry)
  return tonumber(entry[2][2]) >= horizon
end
local function at_or_after(seq)
  return redis.call('XRANGE', log, id(seq), '+', 'COUNT', 1)[1]
end

-- The first retained sequence: within the count, and not past the age. Appends may not have
-- trimmed yet (an idle channel), but created times grow with the sequence, so the expired
-- events are a prefix of the contiguous log: a binary search finds its end in O(log n).
local first = last + 1
local oldest = at_or_after(math.max(1, last - retention + 1))
if oldest then
  if alive(oldest) then
    first = seq_of(oldest)
  else
    local newest = redis.call('XREVRANGE', log, '+', '-', 'COUNT', 1)[1]
    if alive(newest) then
      local dead, live = seq_of(oldest), seq_of(newest)
      while live - dead > 1 do
        local mid = math.floor((dead + live) / 2)
        if alive(at_or_after(mid)) then
          live = mid
        else
          dead = mid
        end
      end
      first = live
    end
  end
end

local out = {m[1], m[2], first, last, tonumber(m[4]) or 0}
local from = math.max(after + 1, first)
if limit > 0 and from <= last then
  for _, entry in ipairs(redis.call('XRANGE', log, id(from), '+', 'COUNT', limit)) do
    local f = entry[2] -- t, <ms>, y, <type>, d, <data> [, k, <key>]
    out[#out + 1] = seq_of(entry)
    out[#out + 1] = f[2]
    out[#out + 1] = f[4]
    out[#out + 1] = f[6]
  end
end
return out
