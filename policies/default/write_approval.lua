-- Writes, deletes and high-risk calls wait for a human.
local function listed(list, value)
  for _, v in ipairs(list) do
    if v == value then return true end
  end
  return false
end

return {
  id = "write-approval",
  description = "Requires human approval for write/delete tools and for high-risk calls.",
  before_tool = function(call)
    if call.operation and listed(data.approval.operations, call.operation) then
      return require_approval(string.format("%s by %s via '%s' needs a human",
        call.operation, call.agent.id or "an agent", call.tool))
    end
    if call.risk and listed(data.approval.risk_levels, call.risk) then
      return require_approval(string.format("%s-risk call to '%s' needs a human", call.risk, call.tool))
    end
  end,
  before_model = function(call)
    if call.risk and listed(data.approval.risk_levels, call.risk) then
      return require_approval(string.format("%s-risk model call needs a human", call.risk))
    end
  end,
}
