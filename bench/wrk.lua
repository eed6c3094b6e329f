-- wrk script of the benchmark: adds the request headers named in the
-- environment (BENCH_HEADER_1..n as "Name: value") and prints one JSON line with
-- the throughput and the latency percentiles (microseconds), which wrk's own
-- --latency report stops short of (it has no p99.9).

local i = 1
while true do
  local h = os.getenv("BENCH_HEADER_" .. i)
  if not h then break end
  local name, value = h:match("^([^:]+):%s*(.*)$")
  if name then wrk.headers[name] = value end
  i = i + 1
end

local points = { 50, 75, 90, 95, 99, 99.5, 99.9, 99.95, 99.99 }

function done(summary, latency, requests)
  local secs = summary.duration / 1e6
  local e = summary.errors
  local parts = {}
  for _, p in ipairs(points) do
    parts[#parts + 1] = string.format('"%s": %d', tostring(p), latency:percentile(p))
  end
  io.write(string.format(
    'BENCHJSON {"requests": %d, "seconds": %.3f, "rps": %.1f, "mean_us": %.1f, "max_us": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"percentiles_us": {%s}}\n',
    summary.requests, secs, summary.requests / secs, latency.mean, latency.max,
    e.connect, e.read, e.write, e.status, e.timeout, table.concat(parts, ", ")))
end
