-- Start the worker again from the slot's position: spec.disabled = false.
if obj.spec == nil then
  obj.spec = {}
end
obj.spec.disabled = false
return obj
