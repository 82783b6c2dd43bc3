-- GET /v1/events pages at random depths: the paths come from URLS_FILE,
-- one per line (made by bench_http.sh with cursors the server issued).
dofile(os.getenv("WRK_COMMON") or "scripts/wrk/common.lua")
local paths = {}
for line in io.lines(os.getenv("URLS_FILE")) do
  table.insert(paths, line)
end
local i = 0

function request()
  i = i + 1
  return wrk.format("GET", paths[math.random(1, #paths)])
end
