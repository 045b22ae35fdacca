-- Shared by the wrk scripts of bench/http_load.py (loaded with dofile).
--
-- Each thread counts its responses by status; done() adds the threads' counts
-- up and prints one line, "WRK_RESULT {json}", that http_load.py parses.
-- Latencies are in microseconds, as wrk measures them.

local threads = {}
statuses = {}

-- The table the Python side wrote for this run (BENCH_WRK_CONFIG names the file).
function bench_config()
   local path = os.getenv("BENCH_WRK_CONFIG")
   if path == nil or path == "" then
      return {}
   end
   return dofile(path)
end

function count_status(status)
   statuses[status] = (statuses[status] or 0) + 1
end

function setup(thread)
   table.insert(threads, thread)
   -- Runs in the main state before the thread's init(): the thread's number
   -- decides which profiles it may write.
   thread:set("thread_number", #threads)
end

function response(status, headers, body)
   count_status(status)
end

local function encode(value)
   local kind = type(value)
   if kind == "table" then
      local parts = {}
      for key, item in pairs(value) do
         parts[#parts + 1] = '"' .. tostring(key) .. '":' .. encode(item)
      end
      return "{" .. table.concat(parts, ",") .. "}"
   elseif kind == "number" then
      if value == math.floor(value) and math.abs(value) < 2^53 then
         return string.format("%d", value)
      end
      return string.format("%.6f", value)
   elseif kind == "string" then
      return '"' .. value:gsub('[%c"\\]', "") .. '"'
   elseif kind == "boolean" then
      return tostring(value)
   end
   return "null"
end

function done(summary, latency, requests)
   local total = {}
   for _, thread in ipairs(threads) do
      local counts = thread:get("statuses") or {}
      for status, count in pairs(counts) do
         total[tostring(status)] = (total[tostring(status)] or 0) + count
      end
   end
   local result = {
      duration_us = summary.duration,
      requests = summary.requests,
      bytes = summary.bytes,
      errors = {
         connect = summary.errors.connect,
         read = summary.errors.read,
         write = summary.errors.write,
         status = summary.errors.status,
         timeout = summary.errors.timeout,
      },
      statuses = total,
      latency_us = {
         p50 = latency:percentile(50),
         p90 = latency:percentile(90),
         p99 = latency:percentile(99),
         mean = latency.mean,
         max = latency.max,
      },
   }
   io.write("WRK_RESULT ", encode(result), "\n")
end
