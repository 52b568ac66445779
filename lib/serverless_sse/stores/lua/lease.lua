#!lua
-- Take or renew a lease in a group unless the group already has `limit` live leases.
--
-- KEYS: the group (sorted set: holder -> end of its lease, in ms).
-- ARGV: holder, limit, ttl_ms. Returns 1 when the lease is held, 0 when refused.
local group, holder = KEYS[1], ARGV[1]
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
-- Leases of instances that died without releasing them stop counting here.
redis.call('ZREMRANGEBYSCORE', group, '-inf', string.format('%d', now))
if not redis.call('ZSCORE', group, holder) and redis.call('ZCARD', group) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', group, string.format('%d', now + tonumber(ARGV[3])), holder)
-- The group itself lives as long as its longest lease.
local latest = redis.call('ZRANGE', group, -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', group, latest[2])
return 1
