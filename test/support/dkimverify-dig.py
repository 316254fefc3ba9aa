#!/usr/bin/python3
# dkimpy's verifier (python3-dkim, not ours) with its DNS look-ups sent to a server on loopback:
# every TXT query is `dig @ADDRESS -p PORT +short TXT name`. Reads the message on stdin; prints
# "signature ok" / "signature verification failed" like dkimverify and exits 0 / 1.
# Usage: dkimverify-dig.py ADDRESS PORT [INDEX]   (INDEX: which DKIM-Signature, default 0)
import subprocess
import sys

import dkim


def main():
    address, port = sys.argv[1], sys.argv[2]
    index = int(sys.argv[3]) if len(sys.argv) > 3 else 0

    def dnsfunc(name, timeout=5):
        qname = name.decode('ascii') if isinstance(name, bytes) else name
        out = subprocess.run(
            ['dig', '@' + address, '-p', port, '+short', '+time=2', '+tries=1', 'TXT', qname],
            capture_output=True, check=False, timeout=timeout + 5,
        ).stdout.decode('ascii', 'replace')
        records = []
        for line in out.splitlines():
            # "part1" "part2" -> part1part2
            parts = [p for i, p in enumerate(line.split('"')) if i % 2 == 1]
            records.append(''.join(parts))
        for r in records:
            if r.startswith('v=DKIM1'):
                print('key found at ' + qname, file=sys.stderr)
                return r.encode('ascii')
        return records[0].encode('ascii') if records else None

    message = sys.stdin.buffer.read()
    d = dkim.DKIM(message)
    try:
        ok = d.verify(idx=index, dnsfunc=dnsfunc)
    except dkim.DKIMException as e:
        print('signature verification failed: %s' % e)
        sys.exit(1)
    if ok:
        print('signature ok')
        sys.exit(0)
    print('signature verification failed')
    sys.exit(1)


if __name__ == '__main__':
    main()
