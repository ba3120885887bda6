-- Each role may call only the tools listed for it in bundle.yaml
-- (data.tool_allowlist). Roles without a list are left to permissions.yaml.
return {
  id = "tool-allowlist",
  description = "Denies tools that are not on the calling agent's role allowlist.",
  before_tool = function(call)
    local role = call.agent.role
    local allowed = role and data.tool_allowlist[role]
    if allowed == nil then return nil end
    for _, pattern in ipairs(allowed) do
      if glob.match(pattern, call.tool) then return nil end
    end
    return deny(string.format("role '%s' may not call tool '%s'", role, call.tool))
  end,
}
