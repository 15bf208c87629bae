if isReady and obj.spec ~= nil and obj.spec.powerState == "Deallocated" then
  hs.status = "Suspended"
  hs.message = "Fleet is deallocated as its spec asks"
  return hs
end
if isReady and obj.status.phase == "Deallocated" then
  hs.status = "Suspended"
  if obj.status.nextTransition ~= nil then
    hs.message = "Fleet is deallocated outside its working hours until " .. obj.status.nextTransition
  else
    hs.message = "Fleet is deallocated outside its working hours"
  end
  return hs
end
