local markers = {"ignore previous instructions", "disregard the system prompt"}
return {
  id = "prompt-injection",
  before_model = function(call)
    local text = string.lower(call.input)
    for _, m in ipairs(markers) do
      if string.find(text, m, 1, true) then return deny("prompt injection marker: " .. m) end
    end
  end,
}
