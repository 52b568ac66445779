#!lua
-- Append events to one channel's log, all or nothing: a script runs atomically, it is refused
-- as a whole when Redis is out of memory (the shebang form), and it writes only after every
-- check passed.
--
-- KEYS: meta (hash: epoch, base, last, time, closed), log (stream), keys (hash: idempotency
--       key -> seq); one hash tag, so one slot.
-- ARGV: retention_events, retention_ms, linger_ms, fresh_epoch, closing ('1' or '0'),
--       then type, data, idempotency key ('' for none) per event.
-- Returns {'closed'} when the channel is closed, else {'ok', epoch, seq, duplicate, ...}.
local meta, log, keys = KEYS[1], KEYS[2], KEYS[3]
local retention = tonumber(ARGV[1])
local retention_ms = tonumber(ARGV[2])
local linger_ms = tonumber(ARGV[3])

local m = redis.call('HMGET', meta, 'epoch', 'base', 'last', 'time', 'closed')
if m[5] then
  return {'closed'}
end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local epoch, base, last = m[1], tonumber(m[2]), tonumber(m[3])
if epoch then
  -- Created times never go backwards, so what age retention removes is always a prefix.
  now = math.max(now, tonumber(m[4]))
else
  -- A new log. Its entry ids are <base>-<seq> with base = its creation time, so every id of a
  -- log created after a lost one sorts after every id of the lost one: a reader blocked in
  -- XREAD after the lost log's last id wakes up when the new log gets its first event.
  epoch, base, last = ARGV[4], now, 0
  redis.call('DEL', log, keys)
end

local function int(n)
  return string.format('%d', n)
end
local function id(seq)
  return int(base) .. '-' .. int(seq)
end

local out = {'ok', epoch}
local in_batch = {}
for i = 6, #ARGV, 3 do
  local etype, data, key = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local seen = nil
  if key ~= '' then
    seen = in_batch[key] or tonumber(redis.call('HGET', keys, key))
  end
  if seen then
    out[#out + 1] = seen
    out[#out + 1] = 1
  else
    last = last + 1
    if key ~= '' then
      redis.call('XADD', log, id(last), 't', int(now), 'y', etype, 'd', data, 'k', key)
      redis.call('HSET', keys, key, int(last))
      in_batch[key] = last
    else
      redis.call('XADD', log, id(last), 't', int(now), 'y', etype, 'd', data)
    end
    out[#out + 1] = last
    out[#out + 1] = 0
  end
end

-- Retention: drop the oldest events beyond the count or older than the age, and forget their
-- idempotency keys. Each event is looked at once when it is dropped, plus one look at the
-- first one kept, so the cost is amortised O(1) per appended event.
local horizon = now - retention_ms
local excess = redis.call('XLEN', log) - retention
local dropped = nil
local from = '-'
while true do
  local entries = redis.call('XRANGE', log, from, '+', 'COUNT', 64)
  if #entries == 0 then
    break
  end
  local kept = false
  for _, entry in ipairs(entries) do
    local f = entry[2] -- t, <ms>, y, <type>, d, <data> [, k, <key>]
    if excess <= 0 and tonumber(f[2]) >= horizon then
      kept = true
      break
    end
    excess = excess - 1
    if f[8] then
      redis.call('HDEL', keys, f[8])
    end
    dropped = entry[1]
  end
  if kept then
    break
  end
  from = '(' .. dropped
end
if dropped then
  local seq = tonumber(string.match(dropped, '%-(%d+)$'))
  redis.call('XTRIM', log, 'MINID', id(seq + 1))
end

if ARGV[5] == '1' then
  redis.call('HSET', meta, 'closed', int(last))
end
redis.call('HSET', meta, 'epoch', epoch, 'base', int(base), 'last', int(last), 'time', int(now))
-- An idle channel's events and keys go away once they are all past the age retention; its
-- epoch, sequence and closed flag stay for the linger period after that.
redis.call('PEXPIRE', log, int(retention_ms + 1000))
redis.call('PEXPIRE', keys, int(retention_ms + 1000))
redis.call('PEXPIRE', meta, int(retention_ms + linger_ms))
return out
