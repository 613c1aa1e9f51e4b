-- Adds a device to its app's device list, in registration order, once.
-- KEYS[1] the app's device list (sorted set: device id, 16 bytes, scored by registration
-- number), KEYS[2] the app's registration counter; ARGV[1] the device id (16 bytes).
-- Returns the device's registration number. The counter never goes back, so a listing
-- cursor (the last number seen) stays valid while devices are added.

local known = redis.call('ZSCORE', KEYS[1], ARGV[1])
if known then
  return tonumber(known)
end
local number = redis.call('INCR', KEYS[2])
redis.call('ZADD', KEYS[1], number, ARGV[1])
return number
