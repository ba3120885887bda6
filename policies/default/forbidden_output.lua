-- Stops outputs that contain forbidden phrases or touch forbidden topics.
local function find_forbidden(text)
  if text == nil then return nil end
  local lower = string.lower(text)
  for _, phrase in ipairs(data.forbidden_output.phrases) do
    if string.find(lower, phrase, 1, true) then return "phrase '" .. phrase .. "'" end
  end
  for topic, markers in pairs(data.forbidden_output.topics) do
    for _, marker in ipairs(markers) do
      if string.find(lower, marker, 1, true) then return "topic '" .. topic .. "'" end
    end
  end
  return nil
end

return {
  id = "forbidden-output",
  description = "Denies model output (whole or streamed) with forbidden phrases or topics.",
  after_model = function(call, out)
    local what = find_forbidden(out.text)
    if what then return deny("output contains forbidden " .. what) end
  end,
  on_chunk = function(call, chunk)
    local what = find_forbidden(chunk.text)
    if what then return deny("stream contains forbidden " .. what) end
  end,
}
