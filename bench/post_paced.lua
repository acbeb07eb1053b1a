-- wrk script: post_lines.lua at a fixed pace. Each connection waits args[3] milliseconds between
-- requests, so the offered rate is about connections * 1000 / args[3] requests per second.
dofile(os.getenv("VERIHOOK_BENCH_DIR") .. "/post_lines.lua")
local pause = 0
local base_init = init

function init(args)
  base_init(args)
  pause = tonumber(args[3])
end

function delay()
  return pause
end
