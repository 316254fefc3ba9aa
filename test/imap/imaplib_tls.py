"""Python's imaplib against the TLS listeners: LOGINDISABLED and a refused LOGIN before STARTTLS on the
plain port, then STARTTLS and LOGIN; IMAP4_SSL on the implicit TLS port.

Usage: imaplib_tls.py PORT TLSPORT USER PASS. Exits non-zero (with the failing step) on any mismatch."""
import imaplib
import ssl
import sys

port, tls_port, user, password = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE

m = imaplib.IMAP4('127.0.0.1', port)
caps = m.capabilities
assert 'LOGINDISABLED' in caps and 'STARTTLS' in caps and 'AUTH=PLAIN' not in caps, caps
try:
    m.login(user, password)
    raise SystemExit('LOGIN in the clear was accepted')
except imaplib.IMAP4.error as e:
    assert 'PRIVACYREQUIRED' in str(e), e
typ, _ = m.starttls(ssl_context=ctx)
assert typ == 'OK'
assert 'LOGINDISABLED' not in m.capabilities and 'AUTH=PLAIN' in m.capabilities, m.capabilities
assert m.login(user, password)[0] == 'OK'
assert m.select('INBOX')[0] == 'OK'
assert m.logout()[0] == 'BYE'

s = imaplib.IMAP4_SSL('127.0.0.1', tls_port, ssl_context=ctx)
assert 'STARTTLS' not in s.capabilities, s.capabilities
assert s.login(user, password)[0] == 'OK'
typ, data = s.select('INBOX')
assert typ == 'OK' and int(data[0]) >= 1, data
typ, data = s.fetch('1', '(BODY.PEEK[HEADER.FIELDS (SUBJECT)])')
assert typ == 'OK' and b'Subject: message 1' in data[0][1], data
assert s.logout()[0] == 'BYE'
print('imaplib tls: ok')
