-- Batches of BATCH (default 500) events per POST.
dofile(os.getenv("WRK_COMMON") or "scripts/wrk/common.lua")
local size = tonumber(os.getenv("BATCH") or "500")
local n = 0

function request()
  local items = {}
  for i = 1, size do
    n = n + 1
    items[i] = string.format(
      '{"event":"user.login","level":"info","actor":"user-%d","resource":"/api/v1/orders/%d","success":true,' ..
      '"source_ip":"10.0.%d.%d","user_agent":"wrk/4 bench","details":{"method":"POST","status":201,"path":"/api/v1/orders"}}',
      n % 1000, n, n % 256, n % 200)
  end
  return wrk.format("POST", "/v1/events", {["Content-Type"] = "application/json"}, "[" .. table.concat(items, ",") .. "]")
end
