// The base HAProxy configuration nexus renders. Everything that changes with the ledger (hosts,
// routes, roles) lives in map files driven over the runtime API; the configuration changes only
// when an IMVU appears that has no backend in it yet (one backend each, pinned to its own workload
// address, and spare backends for the ids created next: a new IMVU usually finds its own).
import type { MapName, TableImvu } from './table.ts';
import { RATE_WINDOW_S } from '../routes/policy.ts';

export interface HaproxyLayout {
  /** Directory of the gateway's files (maps, certificates, sockets). */
  dir: string;
  adminSocket: string;
  masterSocket: string;
  logSocket: string;
  crtList: string;
  jwtKey: string;
  maps: Record<MapName, string>;
  /** ACME HTTP-01 challenges: token -> key authorization (see acmeHttpRules). */
  acmeMap: string;
}

export interface RenderOptions {
  layout: HaproxyLayout;
  /** Address and port of the HTTPS listener. */
  httpsBind: string;
  /** Address and port of the plain-HTTP listener (redirects to HTTPS, except ACME challenges). */
  httpBind?: string;
  /** Public HTTPS port used in redirects (443 unless the listener is elsewhere). */
  httpsPort: number;
  imvus: TableImvu[];
  /**
   * Backends of IMVUs not created yet: the next ids `imvu.create` gives, each pinned to the workload
   * address of its sequence number like any IMVU's. A new IMVU that finds its backend here is
   * served without a reload (its certificate and lines come over the runtime API); no host maps to
   * a spare until its IMVU exists.
   */
  spares?: { id: string; address: string }[];
  /** This gateway's region (geo routing); undefined: not set. */
  region?: string;
  /** Requests one client address may start per window, over every host (default SOURCE_LIMIT). */
  sourceLimit?: SourceLimit;
  /** Drop privileges to this user/group after binding (root only). */
  user?: string;
  group?: string;
}

const q = (s: string) => `"${s.replace(/["\\]/g, '\\$&')}"`;

export function renderConfig(o: RenderOptions): string {
  const L = o.layout;
  const lines: string[] = [
    '# Rendered by nexus: changes are overwritten. Routes, hosts and roles are in the map files.',
    'global',
    `  stats socket ${L.adminSocket} mode 600 level admin expose-fd listeners`,
    `  log ${L.logSocket} len 4096 format rfc5424 local0 info`,
    '  tune.ssl.default-dh-param 2048',
    '  ssl-default-bind-options ssl-min-ver TLSv1.2',
    ...HOSTILE_TUNING,
    ...(o.user ? [`  user ${o.user}`] : []),
    ...(o.group ? [`  group ${o.group}`] : []),
    '',
    'defaults',
    '  mode http',
    '  log global',
    '  option dontlognull',
    '  timeout connect 5s',
    '  timeout client 30s',
    '  timeout server 60s',
    // Slowloris: a request's headers must arrive within this, however slowly they trickle.
    '  timeout http-request 10s',
    '  timeout http-keep-alive 10s',
    '  timeout client-fin 5s',
    // A client refused for its rate waits this long for its 429: a flood slows itself down.
    '  timeout tarpit 1s',
    '',
    // Counters per route (request rate) and per IMVU (concurrent connections); threat 3.1.
    'backend st_route',
    `  stick-table type string len 320 size 200k expire 60s store http_req_rate(${RATE_WINDOW_S}s)`,
    // Route tokens whose signature HAProxy verified (see the private-route rules).
    'backend st_jwt',
    '  stick-table type string len 1024 size 100k expire 60s',
    'backend st_imvu',
    `  stick-table type string len 16 size 100k expire 60s store conn_cur,http_req_rate(${RATE_WINDOW_S}s)`,
    ...sourceTable(o.sourceLimit ?? SOURCE_LIMIT),
    '',
  ];
  if (o.httpBind) {
    lines.push(
      'frontend http',
      `  bind ${o.httpBind}`,
      ...SMUGGLING_RULES,
      ...acmeHttpRules(L),
      `  http-request redirect location https://%[req.hdr(host),field(1,:),lower]${o.httpsPort === 443 ? '' : `:${o.httpsPort}`}%[capture.req.uri] code 301`,
      '',
    );
  }
  const M = L.maps;
  lines.push(
    'frontend https',
    `  bind ${o.httpsBind} ssl crt-list ${L.crtList} alpn h2,http/1.1`,
    ...SOURCE_TRACKING,
    '  log-format "gw %[var(txn.imvu)] %[var(txn.route),field(4,|)] %ST %[var(txn.why)]"',
    ...SMUGGLING_RULES,
    ...sourceRules(o.sourceLimit ?? SOURCE_LIMIT),
    // A Host that is not a host name (and port) is refused before any lookup: a NUL would end
    // the map key early (imvu001.world\0.evil found as imvu001.world).
    '  http-request deny deny_status 400 unless { req.hdr(host) -m reg -i ^[a-z0-9.-]{1,253}(:[0-9]{1,5})?$ }',
    `  http-request set-var(txn.imvu) req.hdr(host),field(1,:),lower,map_str(${M.hosts})`,
    '  http-request return status 421 content-type text/plain string "unknown host\\n" unless { var(txn.imvu) -m found }',
    // The route key, IMVU then path (an empty path gives `IMVU-`, which no route key is).
    '  http-request set-var-fmt(txn.rk) "%[var(txn.imvu)]%[path]"',
    `  http-request set-var(txn.route) var(txn.rk),map_str(${M.exact})`,
    `  http-request set-var(txn.route) var(txn.rk),map_beg(${M.prefix}) unless { var(txn.route) -m found }`,
    '  http-request return status 404 content-type text/plain string "no route\\n" unless { var(txn.route) -m found }',
    ...ROUTE_FLAGS,
    ...policyRules(o),
    // Each class ends with its rates and forwarding, then `allow` ends the rules for it: a public
    // request never evaluates the token rules, a private one never the role rules (bench/gateway).
    // A gated route's rates come after its token check: requests refused 401 do not spend them.
    ...forwardRules('!gated'),
    ...tokenRules(L),
    ...forwardRules('!restricted'),
    ...roleRules(M.roles),
    ...forwardRules(''),
    ...QUIET_SUCCESS,
    '  use_backend be_%[var(txn.imvu)]',
    '',
  );
  for (const i of [...o.imvus, ...(o.spares ?? [])]) {
    // The server address is the IMVU's own workload, fixed here: no map edit can move its traffic
    // to another address; the port comes from its route.
    lines.push(`backend be_${i.id}`, JWT_STORE, `  server w ${i.address}`, '');
  }
  return lines.join('\n') + '\n';
}

// ---- ACME HTTP-01 on the plain-HTTP frontend ----

/**
 * `/.well-known/acme-challenge/<token>` is answered by HAProxy itself from the `acme` map (token ->
 * key authorization, filled over the runtime API while an order is in progress, RFC 8555 8.3):
 * never redirected and never forwarded to a workload or the daemon. A token that is not in the map,
 * or a path under the prefix that is not one token, is 404; every other path redirects to HTTPS.
 */
function acmeHttpRules(L: HaproxyLayout): string[] {
  return [
    '  acl acme_path path_beg /.well-known/acme-challenge/',
    // A token is base64url (RFC 8555 8.3); `[.]` because the configuration parser eats backslashes.
    `  http-request set-var(txn.acme) path,field(4,/),map_str(${L.acmeMap}) if acme_path { path -m reg ^/[.]well-known/acme-challenge/[A-Za-z0-9_-]{1,128}$ }`,
    '  http-request return status 200 content-type text/plain lf-string "%[var(txn.acme)]" if { var(txn.acme) -m found }',
    '  http-request return status 404 content-type text/plain string "no such challenge\\n" if acme_path',
  ];
}

// ---- Tuning (bench/gateway): per-request work the data plane does not need to repeat ----

/**
 * The route's class as booleans, set once per request (`restricted` by the token rules, which only
 * gated requests reach): the rules that end a class (forwardRules) test them with a plain variable
 * test instead of re-splitting the route value and matching a string each time.
 */
const ROUTE_FLAGS = [
  '  http-request set-var(txn.gated) bool(1) if { var(txn.route) -m beg private| restricted| }',
  '  acl gated var(txn.gated) -m bool',
  '  acl restricted var(txn.restricted) -m bool',
];

/**
 * Private and restricted routes (only their requests get here: a public one was allowed before
 * these rules): an ES256 token of the platform's gateway key, for this IMVU, unexpired. The payload is decoded once (a verified token: its second part), then audience and
 * expiry are read from that JSON (HAProxy 2.6's jwt_payload_query without a path yields nothing).
 * Each refusal reason is set only when no earlier one was, so the first failed check is logged.
 */
function tokenRules(L: HaproxyLayout): string[] {
  return [
    '  http-request set-var(txn.restricted) bool(1) if { var(txn.route) -m beg restricted| }',
    '  http-request set-var(txn.jwt) http_auth_bearer',
    // A token whose signature was verified in the last minute is in st_jwt (keyed by the whole
    // token, so only the identical string hits): the ES256 verification is the costly step. Its
    // audience and expiry are still checked on every request. Only tokens of JWT characters and
    // shorter than the table's key are cached (a longer key would be cut, a NUL end it). jok: 2
    // found in the cache, 1 verified now (then cached), 0 or less refused. A token verified now is
    // stored by its IMVU's backend (JWT_STORE) once the request passed every check: a remembered
    // token is verified again a minute after it was stored, and each hit costs one lookup.
    '  acl jwtcache var(txn.jwt) -m reg ^[A-Za-z0-9_.-]{1,1000}$',
    '  http-request set-var(txn.jok) int(2) if jwtcache { var(txn.jwt),in_table(st_jwt) }',
    `  http-request set-var(txn.jok) var(txn.jwt),jwt_verify(ES256,${L.jwtKey}) if { var(txn.jwt) -m found } !{ var(txn.jok) -m found }`,
    '  http-request set-var(txn.jstore) bool(1) if { var(txn.jok) -m int 1 } jwtcache',
    "  http-request set-var(txn.jp) var(txn.jwt),word(2,.),ub64dec if { var(txn.jok) -m int 1 2 }",
    '  http-request set-var(txn.why) str(no-token) if !{ var(txn.jwt) -m found }',
    '  http-request set-var(txn.why) str(bad-signature) if !{ var(txn.why) -m found } !{ var(txn.jok) -m int 1 2 }',
    "  http-request set-var(txn.why) str(wrong-audience) if !{ var(txn.why) -m found } !{ var(txn.jp),json_query('$.aud'),strcmp(txn.imvu) eq 0 }",
    "  http-request set-var(txn.exp) var(txn.jp),json_query('$.exp',int) if !{ var(txn.why) -m found }",
    // exp - now > 0, or expired: a token without a numeric expiry is refused too.
    '  http-request set-var(txn.why) str(expired) if !{ var(txn.why) -m found } !{ date,neg,add(txn.exp) gt 0 }',
    '  http-request return status 401 hdr WWW-Authenticate "Bearer" content-type text/plain string "token required\\n" if { var(txn.why) -m found }',
  ];
}

/**
 * Restricted routes (only their requests get here): one of the token's roles (space-separated
 * claim, first four) is listed on the route.
 */
function roleRules(roles: string): string[] {
  return [
    "  http-request set-var(txn.roles) var(txn.jp),json_query('$.roles')",
    '  http-request set-var(txn.rid) var(txn.route),field(4,|)',
    ...[1, 2, 3, 4].flatMap((i) => [
      `  http-request set-var(txn.role${i}) var(txn.roles),word(${i},' ')`,
      `  http-request set-var(txn.ok${i}) var(txn.rid),concat(:,txn.role${i}),map_str(${roles}) if { var(txn.role${i}) -m found }`,
    ]),
    '  http-request set-var(txn.why) str(missing-role) if !{ var(txn.ok1) -m found } !{ var(txn.ok2) -m found } !{ var(txn.ok3) -m found } !{ var(txn.ok4) -m found }',
    // No other reason can be set here: every earlier one was answered.
    '  http-request return status 403 content-type text/plain string "role required\\n" if { var(txn.why) -m found }',
  ];
}

/**
 * nexus reads only refusals (401, 403, 429, 451, answered by HAProxy itself) and errors from the
 * log stream: a request the workload answered below 500 is not logged, which spares HAProxy a log
 * line and the daemon a datagram per request. Refusals and HAProxy's own errors never reach the
 * http-response rules, so they are logged as before; a workload's 5xx is logged too.
 */
const QUIET_SUCCESS = ['  http-response set-log-level silent if { status lt 500 }'];

/**
 * Whether an HTTPS listener can see IPv6 clients. A listener on an IPv4 address never does, so
 * the allow-list's 129 IPv6 lookups (one per prefix length) are left
 * out of its configuration; any other bind (an IPv6 address, a host name) keeps them.
 */
export function acceptsIpv6(bind: string): boolean {
  return !/^(ipv4@)?\d{1,3}(\.\d{1,3}){3}:\d+$/.test(bind);
}

// ---- Policy routing, allow-lists, rates and hostile-traffic bounds (the edge of the gateway) ----

/** Global tuning against hostile clients (HTTP/2 stream floods; see test/gateway/hostile.test.ts). */
const HOSTILE_TUNING = [
  // At most this many concurrent streams per HTTP/2 connection; more are refused.
  '  tune.h2.max-concurrent-streams 100',
];

/**
 * Geo routing, then the route's IP allow-list. Geo: a private or restricted route of an IMVU whose
 * jurisdiction keeps its data in certain areas is refused with 451 by a gateway elsewhere (the
 * `imvus` map's first field, computed from this gateway's region). Allow-list: the client address
 * masked to every prefix length, `network/len@route`, looked up in the `allow` map (HAProxy cannot
 * hold per-route address lists in a runtime map any other way); none found: 403. The lookups are
 * the terms of one named ACL (lines of one name are ORed, evaluated in order up to the first
 * match) behind `listed`: a route without an allow-list pays one rule for it, not one per prefix
 * length (bench/gateway).
 */
function policyRules(o: RenderOptions): string[] {
  const M = o.layout.maps;
  const v4 = Array.from({ length: 33 }, (_, l) => `  acl allowed4 src,ipmask(${l}),concat(/${l}@,txn.rid,),map_str(${M.allow}) -m found`);
  const v6 = Array.from({ length: 129 }, (_, l) => `  acl allowed6 src,ipmask(32,${l}),concat(/${l}@,txn.rid,),map_str(${M.allow}) -m found`);
  const ipv6 = acceptsIpv6(o.httpsBind);
  return [
    // Only a gated route needs the region: a public request makes no lookup in the imvus map.
    `  http-request set-var(txn.imv) var(txn.imvu),map_str(${M.imvus}) if gated`,
    '  http-request set-var(txn.why) str(region) if gated !{ var(txn.imv),field(1,|) -m str 1 }',
    `  http-request return status 451 content-type text/plain lf-string "%[var(txn.imvu)] is under %[var(txn.imv),field(2,|)]: its private and restricted routes are served only by gateways in the %[var(txn.imv),field(3,|)] area(s); this gateway is in region ${o.region ?? '(none set)'}\\n" if gated { var(txn.why) -m found }`,
    '  acl listed var(txn.route),field(5,|) -m str 1',
    // The allow map's keys end with the route id; concat appends only a variable's contents.
    '  http-request set-var(txn.rid) var(txn.route),field(4,|) if listed',
    '  acl is_v4 src -m ip 0.0.0.0/0',
    ...v4,
    ...(ipv6 ? v6 : []),
    // An IPv6 client of a listener rendered without the IPv6 lookups is refused: none can match.
    `  http-request set-var(txn.why) str(ip-not-allowed) if listed is_v4 !allowed4 || listed !is_v4${ipv6 ? ' !allowed6' : ''}`,
    // No other reason can be set here: a refused region was answered.
    '  http-request return status 403 content-type text/plain string "address not allowed\\n" if { var(txn.why) -m found }',
  ];
}

/**
 * Rates (threat 3.1): requests per route per window (the route's rate_limit), requests per IMVU
 * per window and its concurrent connections (both from its envelope, copied into each of its
 * route values so that one lookup gives every bound). Refused with 429 and Retry-After, after the
 * tarpit delay.
 */
function rateRules(): string[] {
  return [
    '  http-request track-sc0 var(txn.route),field(4,|) table st_route',
    '  http-request track-sc1 var(txn.imvu) table st_imvu',
    // One variable holds each bound in turn (the arithmetic converters compare with a variable).
    '  http-request set-var(txn.lim) var(txn.route),field(3,|),add(0)',
    '  http-request set-var(txn.why) str(rate) if { sc_http_req_rate(0),sub(txn.lim) gt 0 }',
    '  http-request set-var(txn.lim) var(txn.route),field(6,|),add(0)',
    '  http-request set-var(txn.why) str(imvu-rate) if !{ var(txn.why) -m found } { sc_http_req_rate(1),sub(txn.lim) gt 0 }',
    `  http-request tarpit deny_status 429 content-type text/plain string "too many requests\\n" hdr Retry-After ${RATE_WINDOW_S} if { var(txn.why) -m found }`,
    '  http-request set-var(txn.lim) var(txn.route),field(7,|),add(0)',
    '  http-request set-var(txn.why) str(connections) if { sc_conn_cur(1),sub(txn.lim) gt 0 }',
    '  http-request tarpit deny_status 429 content-type text/plain string "too many connections\\n" hdr Retry-After 1 if { var(txn.why) -m found }',
  ];
}

/**
 * The end of one class's rules, for the requests `cond` selects (every request left, when empty):
 * its rates, the route's port, and `allow`, which ends the frontend's rules for that request. Only
 * the tracking and the `allow` need the condition: for a request of a later class nothing is
 * tracked yet (its sc_* fetches yield nothing, so no rate rule fires), nor any reason set, and the
 * bounds and port it is given are set again by its own class's rules.
 */
function forwardRules(cond: string): string[] {
  const only = (rule: string) => (cond && /track-sc|http-request allow/.test(rule) ? `${rule} if ${cond}` : rule);
  return [...rateRules(), '  http-request set-dst-port var(txn.route),field(2,|),add(0)', ...(cond ? ['  http-request allow'] : [])].map(only);
}

// ---- Request smuggling and per-client request rates (hostile traffic, issue 13 item 8) ----

/**
 * Framing that front and back ends could read differently, refused with 400 (HAProxy's `deny`
 * closes the connection, so no byte after the head is read as a next request). HAProxy 2.6's own
 * HTTP/1 parser already refuses conflicting or malformed Content-Length, a Transfer-Encoding
 * where chunked is not last or is applied twice (400, or 422 when another coding precedes it),
 * empty values, bare CR/VT in values and a space before the colon. What it lets through and these
 * rules refuse: a Transfer-Encoding that is not exactly `chunked` (`Chunked`, `identity, chunked`
 * split over two headers...), more than one Transfer-Encoding header, Transfer-Encoding on an
 * HTTP/1.0 request (RFC 9112 6.1: framing is then untrustworthy), and header names outside
 * [A-Za-z0-9-] (`Transfer_Encoding` is Transfer-Encoding to a server or CGI layer that folds `_`).
 * What no rule can refuse: Content-Length together with Transfer-Encoding. The parser drops the
 * Content-Length before any rule runs (no fetch sees it), forwards the chunked request alone and
 * closes the connection after the response: neutralised, not refused (docs/gateway.md).
 */
const SMUGGLING_RULES = [
  '  acl te_sent req.fhdr(transfer-encoding) -m found',
  '  http-request deny deny_status 400 if te_sent !{ req.fhdr(transfer-encoding) -m str chunked } || te_sent { req.fhdr_cnt(transfer-encoding) gt 1 } || te_sent !{ req.ver 1.1 }',
  '  http-request deny deny_status 400 if { req.hdr_names(:) -m reg [^A-Za-z0-9:-] }',
];

export interface SourceLimit {
  /** Requests one client address may start per window (every host and route together). */
  requests: number;
  windowS: number;
}

/**
 * Default per-client bound: 1,000 requests per 10 s from one address (100/s sustained). It caps
 * what one client can make the workloads receive whatever the protocol does with the streams it
 * opens: an HTTP/2 rapid reset (CVE-2023-44487: HEADERS then RST_STREAM, in a loop) starts a
 * request per stream, and HAProxy 2.6 (no `tune.h2.fe.max-total-streams`, no glitch counters)
 * forwards those it started before the reset arrives.
 */
export const SOURCE_LIMIT: SourceLimit = { requests: 1000, windowS: 10 };

function sourceTable(l: SourceLimit): string[] {
  return ['backend st_src', `  stick-table type ipv6 size 200k expire ${Math.max(60, 2 * l.windowS)}s store gpc0,gpc0_rate(${l.windowS}s)`];
}

/**
 * The client address's entry is looked up once per connection and held by the session in its
 * sc2: each request, and each HTTP/2 stream, counts on it without a table lookup, where
 * `src_inc_gpc0` + `src_gpc0_rate` made two per request (bench/gateway/cpu.ts). A stream starts
 * with a copy of its session's tracked slots, so no `http-request track-sc2` may follow: the
 * token cache is filled by a stick rule instead (JWT_STORE), which takes no slot.
 */
const SOURCE_TRACKING = ['  tcp-request connection track-sc2 src table st_src'];

/**
 * A token verified by this request (not found in st_jwt) is stored there by the backend, when
 * the request has passed every check and goes to the IMVU's workload. Stick rules store without a
 * tracking slot (HAProxy 2.6 has three: the route, the IMVU and the client address use them).
 */
const JWT_STORE = '  stick store-request var(txn.jwt) table st_jwt if { var(txn.jstore) -m bool }';

/**
 * Every request counts against its client address before anything else is looked at (refused
 * ones too: a client spending its budget on bad requests spends it). Over the limit: 429 with
 * Retry-After, nothing forwarded.
 */
function sourceRules(l: SourceLimit): string[] {
  return [
    // The first term counts (always true: the new count is at least 1), the second tests the rate.
    `  http-request deny deny_status 429 content-type text/plain string "too many requests from this address\\n" hdr Retry-After ${l.windowS} if { sc2_inc_gpc0 gt 0 } { sc2_gpc0_rate gt ${l.requests} }`,
  ];
}

export { q as quoteHaproxy };
