export {
  dsValue,
  nameServerNames,
  PLATFORM_ZONE_IMVU,
  PLATFORM_ZONE_TTL,
  platformZoneRecords,
  platformZoneSerial,
  readZoneRows,
  type ZoneRows,
} from './zone.ts';
export { canonicalNameServers, defaultNameServers, ensurePlatformZone, restatePlatformZone, type NameServer } from './declare.ts';
