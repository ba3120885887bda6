return {
  id = "forbidden-output",
  after_model = function(call, out)
    if string.find(out.text, "BEGIN PRIVATE KEY", 1, true) then return deny("key material") end
  end,
}
