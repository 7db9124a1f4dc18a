-- Executors read entries that counted toward their tenant's fair share: take them off the
-- tenants' counters (never below zero: a counter that faded and came back must not go
-- negative and give its tenant more than its share).
--
-- KEYS[1..n]  the tenants' counters ({ns}:fair:<tenant>)
-- ARGV[1..n]  how many of each tenant's entries were read
-- Returns     how many counters were touched

for i = 1, #KEYS do
    local left = redis.call('DECRBY', KEYS[i], ARGV[i])
    if left < 0 then
        redis.call('SET', KEYS[i], 0, 'KEEPTTL')
    end
end
return #KEYS
