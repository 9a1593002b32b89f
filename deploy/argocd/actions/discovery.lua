-- Argo CD resource actions for sluice.dev/Connector: which ones apply now.
local actions = {}
local disabled = obj.spec ~= nil and obj.spec.disabled == true
actions["restart"] = { ["disabled"] = disabled }
actions["resync"] = { ["disabled"] = disabled }
actions["pause"] = { ["disabled"] = disabled }
actions["resume"] = { ["disabled"] = not disabled }
return actions
