-- Take over entries idle past the visibility timeout, without counting a delivery.
--
-- XAUTOCLAIM … JUSTID moves the entries to the janitor and resets their idle time but leaves
-- their delivery counters alone, so a janitor pass that then fails (Postgres down) costs the
-- entries nothing: only deliveries to executors count toward MAX_DELIVERIES. Each claimed
-- entry is read back with its counter; one deleted from the stream (Redis 6.2 keeps those
-- pending) is acknowledged and reported as deleted, as Redis 7 reports its own.
--
-- KEYS[1]  the stream
-- ARGV     group, consumer, min idle ms, cursor, count
-- Returns  {next cursor, {{id, {field, value, …}, times delivered}, …}, {deleted id, …}}

local reply = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4],
    'COUNT', ARGV[5], 'JUSTID')
local deleted = reply[3] or {}
local entries = {}
for _, id in ipairs(reply[2]) do
    local found = redis.call('XRANGE', KEYS[1], id, id)
    if #found == 0 then
        redis.call('XACK', KEYS[1], ARGV[1], id)
        deleted[#deleted + 1] = id
    else
        local pending = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
        entries[#entries + 1] = {id, found[1][2], pending[1][4]}
    end
end
return {reply[1], entries, deleted}
