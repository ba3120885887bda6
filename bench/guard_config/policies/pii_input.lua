return {
  id = "pii-input",
  before_model = function(call)
    local hits = pii.find(call.input, {"email", "phone", "credit_card"})
    if #hits > 0 then return redact(hits, "personal data in the prompt") end
  end,
}
