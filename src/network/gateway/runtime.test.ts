// The runtime API's answers as the gateway reads them, and the payloads it sends.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { parseGetMap, parseMapCounts, parseServersState, payloads } from './runtime.ts';

describe('parseMapCounts', () => {
  it("reads each map file's line count from HAProxy 2.6's listing", () => {
    const text = "# id (file) description\n0 (/d/maps/hosts.map) pattern loaded from file '/d/maps/hosts.map' used by map at file '/d/haproxy.cfg' line 40. curr_ver=3 next_ver=3 entry_cnt=12\n1 (/d/maps/exact.map) pattern loaded from file '/d/maps/exact.map' used by map at file '/d/haproxy.cfg' line 44. curr_ver=0 next_ver=0 entry_cnt=0\n";
    expect([...parseMapCounts(text)]).toEqual([['/d/maps/hosts.map', 12], ['/d/maps/exact.map', 0]]);
  });
});

describe('parseGetMap', () => {
  it('gives the matched key and value, nothing when not found', () => {
    expect(parseGetMap('type=beg, case=sensitive, found=yes, idx=tree, key="IMVU-1/a/b/", value="public|8080|1", type="str"\n\n')).toEqual({ key: 'IMVU-1/a/b/', value: 'public|8080|1' });
    expect(parseGetMap('type=str, case=sensitive, found=no, idx=tree, key="", value="", type="str"\n\n')).toBeUndefined();
  });
});

describe('parseServersState', () => {
  it("gives a backend's servers with address and port, nothing for a backend HAProxy does not have", () => {
    const head = '1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n';
    expect(parseServersState(`${head}3 be_IMVU-001 1 w 10.9.0.2 2 0 1 1 1 1 0 2 0 0 0 0 - 0 - 0 0 - - 0\n`)).toEqual([{ server: 'w', addr: '10.9.0.2', port: 0 }]);
    expect(parseServersState(`${head}3 be_IMVU-001 1 w 10.9.0.6 2 0 1 1 1 1 0 2 0 0 0 0 - 9999 - 0 0 - - 0\n`)).toEqual([{ server: 'w', addr: '10.9.0.6', port: 9999 }]);
    expect(parseServersState("Can't find backend.\n")).toBeUndefined();
  });
});

describe('payloads', () => {
  it('cuts map lines into payloads of at most the given bytes, every line once and in order (a longer line alone)', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.stringMatching(/^[a-z/.-]{1,60}$/), fc.stringMatching(/^[a-z0-9|]{1,30}$/)), { maxLength: 200 }), fc.integer({ min: 20, max: 400 }), (lines, max) => {
        const out = payloads(lines, max);
        expect(out.flatMap((p) => p.split('\n'))).toEqual(lines.map(([k, v]) => `${k} ${v}`));
        for (const p of out) expect(p.length <= max || !p.includes('\n')).toBe(true);
      }),
    );
  });
});
