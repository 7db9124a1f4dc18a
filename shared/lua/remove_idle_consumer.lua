-- Remove a consumer from a group only if it holds no pending entries and has been idle long
-- enough. Atomic, so an entry delivered between the check and the removal cannot be lost
-- (XGROUP DELCONSUMER drops the consumer's pending entries).
--
-- KEYS[1]  the stream
-- ARGV[1]  the consumer group
-- ARGV[2]  the consumer name
-- ARGV[3]  minimum idle time in milliseconds
-- Returns  1 if the consumer was removed, 0 if it was kept (busy, recent or absent)

local consumers = redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
for _, c in ipairs(consumers) do
    local info = {}
    for i = 1, #c, 2 do
        info[c[i]] = c[i + 1]
    end
    if info['name'] == ARGV[2] then
        if tonumber(info['pending']) == 0 and tonumber(info['idle']) >= tonumber(ARGV[3]) then
            redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
            return 1
        end
        return 0
    end
end
return 0
