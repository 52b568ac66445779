#!lua
-- Add to a counter; a counter created here expires after ttl_ms (0: never), like its window.
--
-- KEYS: the counter. ARGV: amount, ttl_ms. Returns the new total.
local key, amount, ttl = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2])
if ttl > 0 and redis.call('EXISTS', key) == 0 then
  redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
  return amount
end
return redis.call('INCRBY', key, ARGV[1])
