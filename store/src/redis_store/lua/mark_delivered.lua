-- Raises a device's delivered position to a seq, never above the last seq given out, never
-- lowering it. KEYS[1] the device's meta hash; ARGV[1] the delivered seq.

local last = tonumber(redis.call('HGET', KEYS[1], 'seq') or 0)
local target = math.min(tonumber(ARGV[1]), last)
local current = tonumber(redis.call('HGET', KEYS[1], 'delivered') or 0)
if target > current then
  redis.call('HSET', KEYS[1], 'delivered', string.format('%d', target))
end
return 0
