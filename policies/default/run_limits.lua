-- Caps how long one agent run may go on: steps and tool calls per run.
local max_steps = data.run_limits.max_steps
local max_tool_calls = data.run_limits.max_tool_calls

return {
  id = "run-limits",
  description = "Denies calls past the maximum steps or tool calls of a run.",
  before_model = function(call)
    local run = call.run
    if run.steps >= max_steps then
      return deny(string.format("run %s reached its limit of %d steps", run.id or "?", max_steps))
    end
  end,
  before_tool = function(call)
    local run = call.run
    if run.tool_calls >= max_tool_calls then
      return deny(string.format("run %s reached its limit of %d tool calls",
        run.id or "?", max_tool_calls))
    end
  end,
}
