-- wrk script: each thread POSTs its own slice of pre-signed deliveries, one per request.
-- The file holds one request per line: "<path>\t<signature header name>\t<value>\t<body>".
local lines = {}
local index = 0
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
      local a = string.find(line, "\t", 1, true)
      local b = string.find(line, "\t", a + 1, true)
      local c = string.find(line, "\t", b + 1, true)
      table.insert(lines, {
        string.sub(line, 1, a - 1), string.sub(line, a + 1, b - 1),
        string.sub(line, b + 1, c - 1), string.sub(line, c + 1),
      })
    end
    mine = mine + 1
  end
end

function request()
  index = index % #lines + 1
  local item = lines[index]
  return wrk.format("POST", item[1], {
    ["Content-Type"] = "application/json",
    [item[2]] = item[3],
  }, item[4])
end
