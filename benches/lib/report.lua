-- Shared by every wrk script of the limits harness: numbers the threads, counts the answers
-- each script calls good (`ok`), and writes one JSON object to $WRK_JSON when the run ends.
-- Every script defines a response() callback, so wrk does the same per-response work in every
-- run (the hello-world limit and sessiond are measured with the same client cost).

local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

ok = 0
starved = 0

-- The JSON-line seed file, one table of captured values per line, for lines of this thread.
function seed_values(pattern)
  local nthreads = tonumber(os.getenv("WRK_THREADS") or "1")
  local out = {}
  local f = assert(io.open(assert(os.getenv("SEED_FILE"), "SEED_FILE not set"), "r"))
  local i = 0
  for line in f:lines() do
    if i % nthreads == id then
      local v = line:match(pattern)
      if v then out[#out + 1] = v end
    end
    i = i + 1
  end
  f:close()
  return out
end

function done(summary, latency, requests)
  local good, short = 0, 0
  for _, t in ipairs(threads) do
    good = good + (t:get("ok") or 0)
    short = short + (t:get("starved") or 0)
  end
  local secs = summary.duration / 1e6
  local e = summary.errors
  local path = os.getenv("WRK_JSON")
  local out = string.format(
    '{"requests":%d,"ok":%d,"starved":%d,"seconds":%.3f,"requests_per_s":%.2f,"ok_per_s":%.2f,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_ms":{"mean":%.3f,"p50":%.3f,"p90":%.3f,"p99":%.3f,"max":%.3f}}\n',
    summary.requests, good, short, secs, summary.requests / secs, good / secs,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean / 1000, latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000)
  if path and path ~= "" then
    local f = assert(io.open(path, "w"))
    f:write(out)
    f:close()
  end
  io.write(out)
end
