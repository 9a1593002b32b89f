-- One-shot command, the same annotation the REST API writes (sluice.dev/command=ReIntialize): slot and progress dropped, then a new snapshot.
-- The operator acts on it and removes the annotations.
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
local now = os.date("!%Y-%m-%dT%H:%M:%SZ")
obj.metadata.annotations["sluice.dev/command"] = "ReIntialize"
obj.metadata.annotations["sluice.dev/command-id"] = "argocd-" .. now
obj.metadata.annotations["sluice.dev/command-requested-at"] = now
return obj
