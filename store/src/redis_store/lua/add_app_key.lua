-- Adds a key to an app, atomically: only if the app exists and has no key with this id.
-- KEYS[1] the app's hash. ARGV[1] the key's field (`key:<id>`), ARGV[2] its value without the
-- leading ordinal (`<kind> <hash hex> <created_at> <scopes> <revoked_at or ->`, see codec.rs).
-- The ordinal is the number of key fields already there: keys are never removed, so it is
-- one more than every ordinal before it.
-- Returns 1 if added, 0 if there is no such app, 2 if the id is taken.

if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  return 2
end
local ordinal = 0
for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(field, 1, 4) == 'key:' then
    ordinal = ordinal + 1
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ordinal .. ' ' .. ARGV[2])
return 1
