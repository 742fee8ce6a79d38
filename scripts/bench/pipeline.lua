-- wrk script: pipeline `depth` GET requests per write (default 16).
-- Usage: wrk -s scripts/bench/pipeline.lua URL -- [depth] [path]
local depth = 16
local path = "/"

init = function(args)
    depth = tonumber(args[1] or depth)
    path = args[2] or path
    local requests = {}
    for i = 1, depth do
        requests[i] = wrk.format("GET", path)
    end
    req = table.concat(requests)
end

request = function()
    return req
end
