// A small authoritative DNS server on loopback that answers for every name (it is the root in the
// tests' root hints): the SPF, DKIM and DMARC records of the outside senders the tests play.
import dgram from 'node:dgram';
import dnsPacket from 'dns-packet';

export interface FixtureRecord {
  name: string;
  type: 'TXT' | 'A' | 'MX';
  data: string;
}

export async function startFixtureDns(records: FixtureRecord[]): Promise<{ port: number; close(): Promise<void> }> {
  const sock = dgram.createSocket('udp4');
  const norm = (n: string) => n.replace(/\.$/, '').toLowerCase();
  sock.on('message', (msg, rinfo) => {
    let q: dnsPacket.DecodedPacket;
    try {
      q = dnsPacket.decode(msg);
    } catch {
      return;
    }
    const question = q.questions?.[0];
    if (!question) return;
    const name = norm(question.name);
    const exact = records.filter((r) => norm(r.name) === name);
    const below = records.some((r) => norm(r.name) === name || norm(r.name).endsWith('.' + name) || name === '');
    const answers = exact
      .filter((r) => r.type === question.type)
      .map((r) => ({
        name: question.name,
        type: r.type,
        class: 'IN' as const,
        ttl: 60,
        data: r.type === 'TXT' ? (r.data.match(/.{1,255}/g) ?? ['']) : r.type === 'MX' ? { preference: 10, exchange: r.data } : r.data,
      }));
    const reply = dnsPacket.encode({
      type: 'response',
      id: q.id,
      flags: dnsPacket.AUTHORITATIVE_ANSWER | (below ? 0 : 3),
      questions: [question],
      answers: answers as never,
      authorities: answers.length ? [] : [{ name: '.', type: 'SOA', class: 'IN', ttl: 60, data: { mname: 'ns.', rname: 'h.', serial: 1, refresh: 60, retry: 60, expire: 60, minimum: 60 } }],
    });
    sock.send(reply, rinfo.port, rinfo.address);
  });
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  return { port: sock.address().port, close: () => new Promise((r) => sock.close(() => r())) };
}
