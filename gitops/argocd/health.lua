-- Argo CD health of the albumops.io kinds (AlbumCollection, MasterMerge, EdgeSnapshotPolicy);
-- one script serves all three. It reads the Ready condition:
--   no status, or no Ready condition                       -> Progressing
--   Ready's observedGeneration below metadata.generation   -> Progressing
--   Ready True                                             -> Healthy
--   Ready False or Unknown with a reason in `progressing`  -> Progressing
--   Ready False or Unknown with a reason in `suspended`    -> Suspended
--   any other reason                                       -> Degraded
-- The message is always Ready's own. The reason lists are those of the operator's catalogue,
-- album_operator/core/health.py (a test keeps them equal).
local progressing = {Building = true, NothingPublished = true, Pending = true}
local suspended = {DryRun = true, Paused = true, Suspended = true}

local hs = {status = "Progressing", message = "waiting for the operator's Ready condition"}
local ready = nil
if obj.status ~= nil and obj.status.conditions ~= nil then
  for _, c in ipairs(obj.status.conditions) do
    if c.type == "Ready" then
      ready = c
    end
  end
end
if ready == nil then
  return hs
end
local detail = (ready.reason or "") .. ": " .. (ready.message or "")
local generation = obj.metadata ~= nil and obj.metadata.generation or nil
local observed = ready.observedGeneration
if observed == nil then
  observed = obj.status.observedGeneration
end
if generation ~= nil and observed ~= nil and observed < generation then
  hs.message = "generation " .. generation .. " not handled yet (observed " .. observed ..
    "); " .. detail
  return hs
end
hs.message = detail
if ready.status == "True" then
  hs.status = "Healthy"
elseif progressing[ready.reason] then
  hs.status = "Progressing"
elseif suspended[ready.reason] then
  hs.status = "Suspended"
else
  hs.status = "Degraded"
end
return hs
