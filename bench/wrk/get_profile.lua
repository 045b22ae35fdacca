-- GET of one profile, the ids drawn at random over all profiles.
--
-- BENCH_WRK_CONFIG: { prefix = "/api/v1/users/", max_id = 10000, seed = 42 }
dofile(debug.getinfo(1, "S").source:sub(2):match("(.*/)") .. "report.lua")

local config

function init(args)
   config = bench_config()
   -- A different sequence in each thread, the same from run to run.
   math.randomseed((config.seed or 1) * 1000 + (thread_number or 1))
end

function request()
   return wrk.format("GET", config.prefix .. math.random(1, config.max_id))
end
