-- Stop the worker and keep the replication slot (the source retains WAL meanwhile): spec.disabled = true.
-- Argo CD's self-heal reverts this unless spec.disabled is also set in Git (or ignored with ignoreDifferences).
if obj.spec == nil then
  obj.spec = {}
end
obj.spec.disabled = true
return obj
