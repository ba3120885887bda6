-- Tool results are data, not instructions: results carrying instruction-like
-- markers are held for a human, and flagged high risk.
return {
  id = "prompt-injection",
  description = "Flags prompt-injection markers in tool results.",
  after_tool = function(call, out)
    if out.text == nil then return nil end
    local lower = string.lower(out.text)
    for _, marker in ipairs(data.injection_markers) do
      if string.find(lower, marker, 1, true) then
        local d = require_approval("tool result from '" .. tostring(call.tool) ..
                                   "' contains an injection marker: '" .. marker .. "'")
        d.risk = "high"
        return d
      end
    end
  end,
}
