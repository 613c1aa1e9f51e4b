-- Revokes an app's key, atomically and once: a key already revoked keeps its first time.
-- KEYS[1] the app's hash. ARGV[1] the key's field (`key:<id>`), ARGV[2] the revocation time
-- (ms), which replaces the last word of the value, `-` while the key is live (see codec.rs).
-- Returns 1 if revoked now, 0 if there is no such key or it was revoked already.

local value = redis.call('HGET', KEYS[1], ARGV[1])
if not value then
  return 0
end
local live = string.match(value, '^(.*) %-$')
if not live then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], live .. ' ' .. ARGV[2])
return 1
