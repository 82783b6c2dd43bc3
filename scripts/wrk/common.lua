-- Shared by the wrk scripts: prints the figures bench_http.sh reads.
--
-- There is deliberately no response() function: with one, wrk hands every
-- response's headers and body to Lua, and on these 2 cores that work is taken
-- from the server being measured (pages: about 13% fewer requests/s and a
-- p99 about 2 ms higher, same run). wrk itself counts every answer with a
-- status of 400 or more in errors.status; the server never sends 3xx here,
-- so the rest are the 200s and 201s. bench_http.sh checks the writes
-- against the rows the file holds after shutdown.

function done(summary, latency, requests)
  local e = summary.errors
  local ok = summary.requests - e.status
  local other = e.status + e.connect + e.read + e.write + e.timeout
  local secs = summary.duration / 1e6
  io.write(string.format("RESULT ok=%d other=%d seconds=%.3f ok_per_s=%.0f p50_ms=%.2f p99_ms=%.2f max_ms=%.2f\n",
    ok, other, secs, ok / secs, latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
