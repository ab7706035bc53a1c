-- Ordered webhook events (store/event_order.py): each device keeps the ordering key of the
-- newest event applied to it, per kind, and an event writes only when it is newer than that key,
-- so a shuffled or redelivered stream ends in the store the ordered stream gives.

-- Registry events (Azure DeviceCreated / DeviceDeleted; AWS registry THING_EVENT created /
-- updated / deleted). Within one provider identity (AWS `thingId`) the provider's version decides
-- (AWS `versionNumber`); across identities (a thing deleted and created again starts at version
-- 1) and where there is no version, the event's time decides.
ALTER TABLE devices ADD COLUMN registry_generation TEXT;
ALTER TABLE devices ADD COLUMN registry_version BIGINT;
ALTER TABLE devices ADD COLUMN registry_at TIMESTAMPTZ;

-- Connection events (Azure DeviceConnected / DeviceDisconnected; AWS lifecycle connected /
-- disconnected): `connection_sequence` is a fixed-width text compared bytewise (Azure's 64-digit
-- hex sequenceNumber; AWS's versionNumber, 20 digits, then 0 connected / 1 disconnected), with
-- the event time as the fallback; `connection_status` is what the newest one said, which a
-- device written again by a registry event keeps as its status.
ALTER TABLE devices ADD COLUMN connection_sequence TEXT;
ALTER TABLE devices ADD COLUMN connection_at TIMESTAMPTZ;
ALTER TABLE devices ADD COLUMN connection_status TEXT;
