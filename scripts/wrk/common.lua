-- Shared by the wrk scripts: counts answers by status across threads and
-- prints the figures bench_http.sh reads.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  ok = 0
  other = 0
end

function response(status, headers, body)
  if status == 200 or status == 201 then ok = ok + 1 else other = other + 1 end
end

function done(summary, latency, requests)
  local o, x = 0, 0
  for _, t in ipairs(threads) do
    o = o + t:get("ok")
    x = x + t:get("other")
  end
  local secs = summary.duration / 1e6
  io.write(string.format("RESULT ok=%d other=%d seconds=%.3f ok_per_s=%.0f p50_ms=%.2f p99_ms=%.2f max_ms=%.2f\n",
    o, x, secs, o / secs, latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
