-- Keeps an app's registry indexes in step with one device's new attributes, atomically.
-- KEYS[1] what each device was last indexed under (hash: device id -> record),
-- KEYS[2] alias -> devices (sorted set, all scores 0, members: alias length (4 bytes
--         big-endian) .. alias .. device id, so that one alias is one lexicographic range),
-- KEYS[3] devices per time zone (hash: zone -> count; a zone leaves at 0).
-- ARGV[1] the device id (16 bytes), ARGV[2] its alias, ARGV[3] its time zone ('' for none).
-- A record is the alias length (4 bytes) .. alias .. zone. Returns 0.

local device, alias, zone = ARGV[1], ARGV[2], ARGV[3]

local function be32(number)
  local bytes = {}
  for i = 4, 1, -1 do
    bytes[i] = number % 256
    number = math.floor(number / 256)
  end
  return string.char(unpack(bytes))
end

local function alias_member(name)
  return be32(#name) .. name .. device
end

local old_alias, old_zone = '', ''
local record = redis.call('HGET', KEYS[1], device)
if record then
  local length = 0
  for i = 1, 4 do
    length = length * 256 + string.byte(record, i)
  end
  old_alias = string.sub(record, 5, 4 + length)
  old_zone = string.sub(record, 5 + length)
end

if old_alias ~= alias then
  if old_alias ~= '' then
    redis.call('ZREM', KEYS[2], alias_member(old_alias))
  end
  if alias ~= '' then
    redis.call('ZADD', KEYS[2], 0, alias_member(alias))
  end
end

if old_zone ~= zone then
  if old_zone ~= '' and redis.call('HINCRBY', KEYS[3], old_zone, -1) <= 0 then
    redis.call('HDEL', KEYS[3], old_zone)
  end
  if zone ~= '' then
    redis.call('HINCRBY', KEYS[3], zone, 1)
  end
end

if alias == '' and zone == '' then
  redis.call('HDEL', KEYS[1], device)
else
  redis.call('HSET', KEYS[1], device, be32(#alias) .. alias .. zone)
end
return 0
