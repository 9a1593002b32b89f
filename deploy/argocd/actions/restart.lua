-- One-shot command, the same annotation the REST API writes (sluice.dev/command=Restart): worker restarted with a new run id; progress is kept.
-- The operator acts on it and removes the annotations.
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
local now = os.date("!%Y-%m-%dT%H:%M:%SZ")
obj.metadata.annotations["sluice.dev/command"] = "Restart"
obj.metadata.annotations["sluice.dev/command-id"] = "argocd-" .. now
obj.metadata.annotations["sluice.dev/command-requested-at"] = now
return obj
