-- GET of the URL given to wrk (list of profiles, timeline page, timeline JSON),
-- with the headers given with -H (a bearer token or a session cookie).
dofile(debug.getinfo(1, "S").source:sub(2):match("(.*/)") .. "report.lua")
