return {
  id = "pii-output",
  after_model = function(call, out)
    local hits = pii.find(out.text, {"email", "phone"})
    if #hits > 0 then return redact(hits, "personal data in the answer") end
  end,
}
