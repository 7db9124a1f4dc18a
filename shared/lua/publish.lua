-- Add many entries to the priority streams in one call (one command to pack and parse
-- instead of one XADD each, and one argument instead of four per entry: packing thousands of
-- arguments was most of a publish's cost in the client).
--
-- KEYS[1..4]  the streams: critical, high, default, low
-- ARGV[1]     one line per entry: "<stream index 1-4> <task id> <attempt> <traceparent>\n"
--             (the traceparent may be empty)
-- Returns     how many entries were added (their ids are not needed: replies cost too)

local added = 0
for index, task, attempt, tp in string.gmatch(ARGV[1], '(%d) (%S+) (%d+) ([^\n]*)\n') do
    local key = KEYS[tonumber(index)]
    if tp == '' then
        redis.call('XADD', key, '*', 't', task, 'a', attempt)
    else
        redis.call('XADD', key, '*', 't', task, 'a', attempt, 'tp', tp)
    end
    added = added + 1
end
return added
