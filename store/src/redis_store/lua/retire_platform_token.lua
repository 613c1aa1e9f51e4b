-- Removes a device's platform token only if it is still the one the caller sent to, so that
-- a token the platform rotated (and the SDK registered) meanwhile is kept.
-- KEYS[1] the device's platform hash; ARGV[1] the token's JSON. Returns 1 if removed.

if redis.call('HGET', KEYS[1], 'token') == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
