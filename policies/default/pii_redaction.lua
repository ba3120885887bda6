-- Redacts personal data and secrets from what models see and say: prompts
-- before a model call, model outputs and tool results after, and streamed
-- output as it arrives.
local function scrub(call, text, kinds, message)
  if text == nil then return nil end
  local hits = pii.find(text, kinds)
  if #hits == 0 then return nil end
  local seen, names = {}, {}
  for _, h in ipairs(hits) do
    if not seen[h.kind] then seen[h.kind] = true; names[#names + 1] = h.kind end
  end
  table.sort(names)
  return redact(hits, message .. ": " .. table.concat(names, ", "))
end

return {
  id = "pii-redaction",
  description = "Masks e-mail addresses, phone numbers, card numbers, IBANs, national ids and secrets.",
  before_model = function(call, input)
    return scrub(call, input.text, data.pii.input_kinds, "personal data in the prompt")
  end,
  after_model = function(call, out)
    return scrub(call, out.text, data.pii.output_kinds, "personal data in the model output")
  end,
  after_tool = function(call, out)
    return scrub(call, out.text, data.pii.output_kinds, "personal data in the tool result")
  end,
  on_chunk = function(call, chunk)
    return scrub(call, chunk.text, data.pii.output_kinds, "personal data in the stream")
  end,
}
