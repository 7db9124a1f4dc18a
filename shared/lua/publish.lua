-- Add many entries to the priority streams in one call (one command to pack and parse
-- instead of one XADD each).
--
-- KEYS[1..4]  the streams: critical, high, default, low
-- ARGV        groups of four: stream index (1-4), task id, attempt, traceparent ("" for none)
-- Returns     the new entry ids, in order

local ids = {}
for i = 1, #ARGV, 4 do
    local key = KEYS[tonumber(ARGV[i])]
    if ARGV[i + 3] == '' then
        ids[#ids + 1] = redis.call('XADD', key, '*', 't', ARGV[i + 1], 'a', ARGV[i + 2])
    else
        ids[#ids + 1] = redis.call(
            'XADD', key, '*', 't', ARGV[i + 1], 'a', ARGV[i + 2], 'tp', ARGV[i + 3])
    end
end
return ids
