-- Moves a campaign to a new state if it is in one of the given states, and keeps the index of
-- scheduled campaigns in step, atomically.
-- KEYS[1] the campaign's hash (fields json, state), KEYS[2] the set of scheduled campaigns.
-- ARGV[1] the new state, ARGV[2] the campaign's member in the set, ARGV[3..] the states it
-- may move from. Returns 1 if it moved, 0 if not (unknown campaign, or in another state).

local state = redis.call('HGET', KEYS[1], 'state')
if not state then
  return 0
end
for i = 3, #ARGV do
  if state == ARGV[i] then
    redis.call('HSET', KEYS[1], 'state', ARGV[1])
    if ARGV[1] == 'scheduled' then
      redis.call('SADD', KEYS[2], ARGV[2])
    else
      redis.call('SREM', KEYS[2], ARGV[2])
    end
    return 1
  end
end
return 0
