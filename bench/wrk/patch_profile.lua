-- PATCH of a profile's name with If-Match carrying its current version.
--
-- BENCH_WRK_CONFIG: { prefix = "/api/v1/users/", slices = { {ids...}, ... },
--                     versions = { [id] = version, ... }, run = n }
--
-- No two requests ever race on one profile: each thread writes only the
-- profiles of its own slice (disjoint), and within a thread a profile whose
-- request is still in flight on another connection is skipped. Versions start
-- as read from the database just before the run and follow each response's
-- ETag, so every If-Match is current: any 412 (or 409, 5xx) is a real finding.
dofile(debug.getinfo(1, "S").source:sub(2):match("(.*/)") .. "report.lua")

local config
local mine
local versions
local in_flight = {}
local position = 0
local serial = 0
local base_headers = {}

function init(args)
   config = bench_config()
   mine = config.slices[thread_number]
   versions = config.versions
   for name, value in pairs(wrk.headers) do
      base_headers[name] = value
   end
   base_headers["Content-Type"] = "application/json"
end

function request()
   local id
   for _ = 1, #mine do
      position = position % #mine + 1
      if not in_flight[mine[position]] then
         id = mine[position]
         break
      end
   end
   if id == nil then
      error("every profile of this thread has a request in flight")
   end
   in_flight[id] = true
   serial = serial + 1
   local headers = {}
   for name, value in pairs(base_headers) do
      headers[name] = value
   end
   headers["If-Match"] = '"' .. versions[id] .. '"'
   local body = string.format(
      '{"name": "Load Test %d-%d-%d", "reason": "load test"}', config.run, thread_number, serial)
   return wrk.format("PATCH", config.prefix .. id, headers, body)
end

function response(status, headers, body)
   count_status(status)
   local id = tonumber((body or ""):match('"id":%s*(%d+)'))
   if id == nil then
      return
   end
   local etag = headers["ETag"] or headers["Etag"] or headers["etag"]
   if status == 200 and etag ~= nil then
      versions[id] = tonumber(etag:match("(%d+)"))
   end
   in_flight[id] = nil
end
