#!/usr/bin/python3
# SPF, DKIM and DMARC of a received message, judged by code we did not write: authheaders
# (python3-authheaders: DMARC, and DKIM through dkimpy) and pyspf (python3-spf), with every DNS
# look-up sent to a server on loopback (`dig @ADDRESS -p PORT`), since nothing here may use port 53.
# Prints the Authentication-Results header they produce.
# Usage: authcheck.py ADDRESS PORT IP MAIL_FROM HELO < message
import subprocess
import sys

import spf
import authheaders

ADDRESS, PORT, IP, MAIL_FROM, HELO = sys.argv[1:6]


def dig(name, qtype):
    name = name.decode('ascii') if isinstance(name, bytes) else name
    out = subprocess.run(['dig', '@' + ADDRESS, '-p', PORT, '+short', '+time=2', '+tries=2', qtype, name],
                         capture_output=True, check=False, timeout=20).stdout.decode('ascii', 'replace')
    return [line for line in out.splitlines() if line and not line.startswith(';')]


def txt_records(name):
    records = []
    for line in dig(name, 'TXT'):
        records.append([p.encode('ascii') for i, p in enumerate(line.split('"')) if i % 2 == 1])
    return records


def spf_lookup(name, qtype, tcpfallback=True, timeout=30):
    out = []
    if qtype in ('TXT', 'SPF'):
        for parts in txt_records(name):
            out.append(((name, qtype), parts))
    elif qtype in ('A', 'AAAA'):
        for a in dig(name, qtype):
            if a[0].isdigit() or ':' in a:
                out.append(((name, qtype), a))
    elif qtype == 'MX':
        for line in dig(name, 'MX'):
            pref, host = line.split()
            out.append(((name, qtype), (int(pref), host.rstrip('.'))))
    return out


spf.DNSLookup = spf_lookup


def dnsfunc(name, timeout=5):
    # dkimpy wants the key record as bytes, authheaders' DMARC look-up the policy as a string.
    qname = name.decode('ascii') if isinstance(name, bytes) else name
    records = [b''.join(parts) for parts in txt_records(qname)]
    if qname.startswith('_dmarc.'):
        found = [r for r in records if r.startswith(b'v=DMARC1')]
        return found[0].decode('ascii') if len(found) == 1 else None
    found = [r for r in records if r.startswith(b'v=DKIM1')]
    return found[0] if found else (records[0] if records else None)


message = sys.stdin.buffer.read()
print(authheaders.authenticate_message(message, 'checker.test', spf=True, dkim=True, dmarc=True,
                                       ip=IP, mail_from=MAIL_FROM, helo=HELO, dnsfunc=dnsfunc))
