return {
  id = "budget-guard",
  before_model = function(call)
    if budget.remaining("per-user") < 0.01 then
      return downgrade("gpt-4o-mini", "budget nearly spent")
    end
  end,
}
