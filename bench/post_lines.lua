-- wrk script: each thread POSTs its own slice of pre-signed deliveries, one per request.
-- The file holds one request per line: "<Contiguity-Signature>\t<body>".
local lines = {}
local index = 0
local thread_id = 0
local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

function init(args)
  local threads = tonumber(args[2])
  local mine = 0
  for line in io.lines(args[1]) do
    if mine % threads == id then
      local tab = string.find(line, "\t", 1, true)
      table.insert(lines, {string.sub(line, 1, tab - 1), string.sub(line, tab + 1)})
    end
    mine = mine + 1
  end
end

function request()
  index = index % #lines + 1
  local item = lines[index]
  return wrk.format("POST", "/webhooks/contiguity", {
    ["Content-Type"] = "application/json",
    ["Contiguity-Signature"] = item[1],
  }, item[2])
end
