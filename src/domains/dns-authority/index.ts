export { startDnsServer, type DnsServer, type DnsServerOptions, type DnsServerStats } from './server.ts';
export { RRL_DEFAULTS, ResponseRateLimiter, prefixKey, type RrlOptions, type RrlVerdict } from './rrl.ts';
export { handleMessage, MAX_UDP_PAYLOAD, CLASSIC_UDP_PAYLOAD, RCODE, type Handled, type Transport } from './responder.ts';
export { ZoneView, type ZoneInfo, type ZoneViewOptions } from './zone-view.ts';
export { Zone, MAX_CHAIN, type AnswerSet, type RecordRow } from './zone.ts';
export { XfrService, readZone, type XfrDeps, type XfrHandled, type XfrOptions, type XfrStats, type ZoneSnapshot } from './xfr.ts';
export { ZoneJournal, servedRecords, type Delta, type IxfrPlan, type ServedRR } from './journal.ts';
export { Notifier, notifyMessage, type NotifierOptions, type NotifyResult, type NotifyTarget } from './notify.ts';
export { tsigKey, ResponseSigner, ResponseVerifier, signRequest, verifyRequest, type TsigKey } from './tsig.ts';
