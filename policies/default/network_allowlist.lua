-- Tools that reach the network may only contact allowed domains. The URL is
-- taken from the tool's `url` argument (or `to` for e-mail: the recipient's
-- domain).
local function host_of(call)
  local args = call.args
  if args == nil then return nil end
  if args.url then return url.host(args.url), args.url end
  if args.to then
    local domain = string.match(args.to, "@([%w%.%-]+)$")
    return domain and string.lower(domain), args.to
  end
  return nil
end

return {
  id = "network-allowlist",
  description = "Blocks URL-fetching and e-mail tools from reaching domains outside the allowlist.",
  scope = { tools = data.network.url_tools },
  before_tool = function(call)
    local host, target = host_of(call)
    if host == nil then
      if target ~= nil then return deny("cannot tell the destination of '" .. tostring(target) .. "'") end
      return nil
    end
    for _, pattern in ipairs(data.network.block) do
      if domain.match(pattern, host) then
        return deny(string.format("domain %s is blocked", host))
      end
    end
    for _, pattern in ipairs(data.network.allow) do
      if domain.match(pattern, host) then return nil end
    end
    return deny(string.format("domain %s is not in the allowlist", host))
  end,
}
