-- Caps how long one agent run may go on: steps and tool calls per run.
return {
  id = "run-limits",
  description = "Denies calls past the maximum steps or tool calls of a run.",
  before_model = function(call)
    if call.run.steps >= data.run_limits.max_steps then
      return deny(string.format("run %s reached its limit of %d steps",
        call.run.id or "?", data.run_limits.max_steps))
    end
  end,
  before_tool = function(call)
    if call.run.tool_calls >= data.run_limits.max_tool_calls then
      return deny(string.format("run %s reached its limit of %d tool calls",
        call.run.id or "?", data.run_limits.max_tool_calls))
    end
  end,
}
