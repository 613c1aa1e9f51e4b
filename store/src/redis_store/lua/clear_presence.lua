-- Clears a device's presence only if it is still held by this connector under this epoch.
-- KEYS[1] the device's meta hash; ARGV[1] connector id, ARGV[2] epoch. Returns 1 if cleared.
-- The epoch counter stays, so the next presence gets a higher epoch.

local current = redis.call('HMGET', KEYS[1], 'presence_connector', 'presence_epoch')
if current[1] == ARGV[1] and current[2] == ARGV[2] then
  redis.call('HDEL', KEYS[1], 'presence_connector', 'presence_since')
  return 1
end
return 0
