-- publish.lua for entries that count toward their tenant's fair share of the streams: each
-- tenant may have at most its cap of such entries added and not yet read; the entries beyond
-- are not added but returned, to be held back in Postgres. Each tenant's count goes up by what
-- this call added (the executors take it down as they read, lua/fair_read.lua).
--
-- KEYS[1..4]  the streams: critical, high, default, low
-- KEYS[5..]   the tenants' counters ({ns}:fair:<tenant>), in the order of ARGV[2]
-- ARGV[1]     one line per entry: "<stream 1-4> <task id> <attempt> <tenant 1..n> <tp>\n"
--             (the traceparent may be empty)
-- ARGV[2]     the tenants' caps, in KEYS order from KEYS[5]: "c1,c2,…"
-- ARGV[3]     the tenants' names, in the same order, space-separated (the entries' `tn` field)
-- ARGV[4]     how long a counter lives untouched, in ms (a counter left behind fades)
-- Returns     the task ids not added, each "<task id>"

local caps, names, counts, added, held = {}, {}, {}, {}, {}
for c in string.gmatch(ARGV[2], '%d+') do
    caps[#caps + 1] = tonumber(c)
end
for name in string.gmatch(ARGV[3], '%S+') do
    names[#names + 1] = name
end
for i = 1, #caps do
    counts[i] = tonumber(redis.call('GET', KEYS[4 + i]) or '0')
    added[i] = 0
end
for index, task, attempt, tenant, tp in
        string.gmatch(ARGV[1], '(%d) (%S+) (%d+) (%d+) ([^\n]*)\n') do
    local t = tonumber(tenant)
    if counts[t] >= caps[t] then
        held[#held + 1] = task
    else
        local key = KEYS[tonumber(index)]
        if tp == '' then
            redis.call('XADD', key, '*', 't', task, 'a', attempt, 'tn', names[t])
        else
            redis.call('XADD', key, '*', 't', task, 'a', attempt, 'tn', names[t], 'tp', tp)
        end
        counts[t] = counts[t] + 1
        added[t] = added[t] + 1
    end
end
for i = 1, #caps do
    if added[i] > 0 then
        redis.call('INCRBY', KEYS[4 + i], added[i])
    end
    redis.call('PEXPIRE', KEYS[4 + i], ARGV[4])
end
return held
