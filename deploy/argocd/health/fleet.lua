if isReady and obj.spec ~= nil and obj.spec.powerState == "Deallocated" then
  hs.status = "Suspended"
  hs.message = "Fleet is deallocated as its spec asks"
  return hs
end
