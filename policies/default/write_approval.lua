-- Writes, deletes and high-risk calls wait for a human.
local function set(list)
  local s = {}
  for _, v in ipairs(list) do s[v] = true end
  return s
end
local approval_operations = set(data.approval.operations)
local approval_risks = set(data.approval.risk_levels)

return {
  id = "write-approval",
  description = "Requires human approval for write/delete tools and for high-risk calls.",
  before_tool = function(call)
    local operation, risk = call.operation, call.risk_level
    if operation and approval_operations[operation] then
      return require_approval(string.format("%s by %s via '%s' needs a human",
        operation, call.agent.id or "an agent", call.tool))
    end
    if risk and approval_risks[risk] then
      return require_approval(string.format("%s-risk call to '%s' needs a human", risk, call.tool))
    end
  end,
  before_model = function(call)
    local risk = call.risk_level
    if risk and approval_risks[risk] then
      return require_approval(string.format("%s-risk model call needs a human", risk))
    end
  end,
}
