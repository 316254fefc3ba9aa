export { startDnsServer, type DnsServer, type DnsServerOptions, type DnsServerStats } from './server.ts';
export { RRL_DEFAULTS, ResponseRateLimiter, prefixKey, type RrlOptions, type RrlVerdict } from './rrl.ts';
export { handleMessage, MAX_UDP_PAYLOAD, CLASSIC_UDP_PAYLOAD, RCODE, type Handled, type Transport } from './responder.ts';
export { ZoneView, type ZoneInfo, type ZoneViewOptions } from './zone-view.ts';
export { Zone, MAX_CHAIN, type AnswerSet, type RecordRow } from './zone.ts';
