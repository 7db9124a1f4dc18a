-- Take running slots of concurrency caps for a batch of tasks, each task all of its caps or
-- none. A cap is a sorted set of "task:attempt" members scored by lease expiry (ms, Redis's
-- clock): members whose lease ran out (a dead executor's) are dropped first, so a dead
-- executor's slots come back within the visibility timeout. A task whose member is already
-- in a cap keeps it (a redelivery of the same attempt).
--
-- KEYS[1..n]  the caps' sorted sets ({ns}:slots:<kind>:<name>)
-- ARGV[1]     the lease, in ms
-- ARGV[2]     n, the number of caps
-- ARGV[3..n+2] each cap's most running at once
-- ARGV[n+3..] per task: its member, then its caps' indexes in KEYS ("1" or "1,2")
-- Returns     per task: 0 if it got its slots, else the index of a cap that was full

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[1])
local n = tonumber(ARGV[2])
local limits, used = {}, {}
for i = 1, n do
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
    limits[i] = tonumber(ARGV[2 + i])
    used[i] = redis.call('ZCARD', KEYS[i])
end
local out = {}
local pos = n + 3
while pos <= #ARGV do
    local member, caps = ARGV[pos], ARGV[pos + 1]
    pos = pos + 2
    local mine, full = {}, 0
    for k in string.gmatch(caps, '%d+') do
        local i = tonumber(k)
        mine[#mine + 1] = i
        if full == 0 and not redis.call('ZSCORE', KEYS[i], member) and used[i] >= limits[i] then
            full = i
        end
    end
    if full == 0 then
        for _, i in ipairs(mine) do
            used[i] = used[i] + redis.call('ZADD', KEYS[i], now + lease, member)
        end
    end
    out[#out + 1] = full
end
return out
