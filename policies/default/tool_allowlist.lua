-- Each role may call only the tools listed for it in bundle.yaml
-- (data.tool_allowlist). Roles without a list are left to permissions.yaml.

-- Work done once, at load: exact names into sets, the rest kept as globs.
local exact, globs = {}, {}
for role, tools in pairs(data.tool_allowlist) do
  exact[role], globs[role] = {}, {}
  for _, pattern in ipairs(tools) do
    if string.find(pattern, "[%*%?%[\\]") then
      table.insert(globs[role], pattern)
    else
      exact[role][pattern] = true
    end
  end
end

return {
  id = "tool-allowlist",
  description = "Denies tools that are not on the calling agent's role allowlist.",
  before_tool = function(call)
    local role = call.agent.role
    local names = role and exact[role]
    if names == nil then return nil end
    local tool = call.tool
    if names[tool] then return nil end
    for _, pattern in ipairs(globs[role]) do
      if glob.match(pattern, tool) then return nil end
    end
    return deny(string.format("role '%s' may not call tool '%s'", role, tool))
  end,
}
