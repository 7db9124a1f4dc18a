-- One tenant's submission rate: GCRA (the generic cell rate algorithm, a token bucket kept as
-- one number, the "theoretical arrival time"). A request of n tasks is admitted whole or not
-- at all; a refused one changes nothing. Redis's own clock decides (TIME), so every ingest
-- process shares one bucket and one clock.
--
-- KEYS[1]  the tenant's bucket ({ns}:rate:<tenant>)
-- ARGV[1]  the emission interval: milliseconds per task (1000 / rate)
-- ARGV[2]  the burst: how many tasks the bucket holds
-- ARGV[3]  n, the tasks this request asks for
-- Returns  {admitted (1 or 0), retry after ms (string), tasks left in the bucket,
--           ms until the bucket is full again (string)}

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local tolerance = interval * burst

local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then
    tat = now
end
local new_tat = tat + n * interval
local allow_at = new_tat - tolerance
if allow_at > now then
    local left = math.floor((now - (tat - tolerance)) / interval)
    return {0, tostring(allow_at - now), left, tostring(tat - now)}
end
redis.call('SET', KEYS[1], string.format('%.3f', new_tat), 'PX', math.ceil(new_tat - now) + 1000)
local left = math.floor((now - allow_at) / interval)
return {1, '0', left, tostring(new_tat - now)}
