-- Argo CD health check for sluice.dev/Connector (argocd-cm: resource.customizations.health.sluice.dev_Connector).
-- Reads only what the Sluice operator writes: metadata.deletionTimestamp, spec.disabled, status.observedGeneration
-- and the Ready / Snapshotting / SlotAtRisk conditions (reasons from src/sluice/operator/conditions.py).
local hs = {}

local function condition(ctype)
  if obj.status ~= nil and obj.status.conditions ~= nil then
    for _, c in ipairs(obj.status.conditions) do
      if c.type == ctype then
        return c
      end
    end
  end
  return nil
end

-- Ready=False with these reasons means "not there yet", not "broken".
local starting = { WorkerPending = true, WorkerStarting = true, Initializing = true }

if obj.metadata ~= nil and obj.metadata.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  hs.message = "Deleting: the operator drops the replication slot and publication Sluice created, then the worker."
  return hs
end

-- A slot past its WAL budget fills the source's disk whether or not the connector is paused: say so first.
local risk = condition("SlotAtRisk")
if risk ~= nil and risk.status == "True" then
  hs.status = "Degraded"
  hs.message = (risk.reason or "SlotAtRisk") .. ": " .. (risk.message or "")
  return hs
end

if obj.spec ~= nil and obj.spec.disabled == true then
  hs.status = "Suspended"
  local wal = condition("WalRetained")
  if wal ~= nil and wal.status == "True" and wal.message ~= nil and wal.message ~= "" then
    hs.message = wal.message
  else
    hs.message = "spec.disabled is true: the worker is stopped. Set it to false to resume."
  end
  return hs
end

local ready = condition("Ready")
local generation = obj.metadata ~= nil and obj.metadata.generation or nil
local observed = obj.status ~= nil and obj.status.observedGeneration or nil
if ready == nil or (generation ~= nil and (observed == nil or observed < generation)) then
  hs.status = "Progressing"
  hs.message = "Waiting for the Sluice operator to act on this generation of the connector."
  return hs
end

if ready.status == "True" then
  local snap = condition("Snapshotting")
  if snap ~= nil and snap.status == "True" then
    hs.status = "Progressing"
    hs.message = "Snapshotting: " .. (ready.message or "")
    return hs
  end
  hs.status = "Healthy"
  hs.message = ready.message or ""
  return hs
end

if ready.status == "False" and not starting[ready.reason or ""] then
  hs.status = "Degraded"
  hs.message = (ready.reason or "NotReady") .. ": " .. (ready.message or "")
  return hs
end

hs.status = "Progressing"
hs.message = ready.message or "Waiting for the worker."
return hs
