"""Python's imaplib against the server: the whole command list, then a desktop client's first sync.

Usage: imaplib_session.py PORT USER PASS. Exits non-zero (with the failing step) on any mismatch."""
import imaplib
import re
import sys

# imaplib knows neither ID nor MOVE by name; it sends them all the same.
imaplib.Commands.setdefault('ID', ('NONAUTH', 'AUTH', 'SELECTED'))
imaplib.Commands.setdefault('MOVE', ('SELECTED',))

port, user, password = int(sys.argv[1]), sys.argv[2], sys.argv[3]


def ok(res, what):
    typ, data = res
    if typ != 'OK':
        raise SystemExit(f'{what}: {typ} {data!r}')
    return data


msg = b'From: Py <py@example.org>\r\nTo: alice@a.example\r\nSubject: from python\r\n\r\nhello from imaplib\r\n'

# AUTHENTICATE PLAIN on one connection, LOGIN on the other.
m = imaplib.IMAP4('127.0.0.1', port)
ok(m.authenticate('PLAIN', lambda _: f'\0{user}\0{password}'.encode()), 'AUTHENTICATE PLAIN')
assert m.logout()[0] == 'BYE'

m = imaplib.IMAP4('127.0.0.1', port)
caps = ok(m.capability(), 'CAPABILITY')[0].decode()
for c in ['IMAP4rev1', 'IDLE', 'UIDPLUS', 'MOVE', 'LITERAL+', 'NAMESPACE', 'SPECIAL-USE', 'ID', 'ENABLE', 'CONDSTORE', 'QUOTA']:
    assert c in caps.split(), f'capability {c} missing from {caps}'
ok(m.noop(), 'NOOP')
ok(m.login(user, password), 'LOGIN')
ok(m._simple_command('ID', 'NIL'), 'ID')
ok(m.enable('CONDSTORE'), 'ENABLE')
ns = ok(m.namespace(), 'NAMESPACE')[0].decode()
assert ns == '(("" ".")) NIL NIL', ns

# Desktop client first sync: LIST, STATUS of each, SELECT, UID FETCH 1:* (FLAGS), bodies, \Seen,
# move to Trash, expunge.
boxes = ok(m.list('""', '*'), 'LIST')
names = [re.search(rb'"\." (.*)$', b).group(1).decode().strip('"') for b in boxes]
assert 'INBOX' in names and 'Trash' in names, names
trash = [b for b in boxes if b.rstrip(b'"').endswith(b'Trash')][0]
assert b'\\Trash' in trash, trash
for n in names:
    ok(m.status(f'"{n}"', '(MESSAGES UIDNEXT UIDVALIDITY UNSEEN)'), f'STATUS {n}')
count = int(ok(m.select('INBOX'), 'SELECT')[0])
assert count == 3, count
flags = ok(m.uid('FETCH', '1:*', '(FLAGS)'), 'UID FETCH FLAGS')
assert len(flags) == 3, flags
bodies = ok(m.uid('FETCH', '1:*', '(BODY.PEEK[HEADER] BODY.PEEK[TEXT] RFC822.SIZE)'), 'UID FETCH bodies')
assert len([b for b in bodies if isinstance(b, tuple)]) == 6, bodies
ok(m.uid('STORE', '1', '+FLAGS.SILENT', '(\\Seen)'), 'UID STORE')
moved = m.uid('MOVE', '1', 'Trash')
assert moved[0] == 'OK', moved
ok(m.store('1', '+FLAGS', '(\\Deleted)'), 'STORE')
ok(m.expunge(), 'EXPUNGE')
assert int(ok(m.select('Trash'), 'SELECT Trash')[0]) == 1
fl = ok(m.fetch('1', '(FLAGS)'), 'FETCH')[0].decode()
assert '\\Seen' in fl, fl
# MOVE by sequence number (UID MOVE was above), with its COPYUID.
typ, data = m._simple_command('MOVE', '1', 'Archive')
assert typ == 'OK', (typ, data)
assert int(ok(m.select('Archive'), 'SELECT Archive')[0]) == 1
assert int(ok(m.select('Trash'), 'SELECT Trash')[0]) == 0

# The rest of the command list.
ok(m.create('Py'), 'CREATE')
ok(m.create('Py.Sub'), 'CREATE child')
ok(m.rename('Py', 'Py2'), 'RENAME')
ok(m.subscribe('Py2'), 'SUBSCRIBE')
lsub = ok(m.lsub('""', '*'), 'LSUB')
assert any(b'Py2' in x for x in lsub), lsub
ok(m.unsubscribe('Py2'), 'UNSUBSCRIBE')
typ, data = m.append('Py2', '(\\Flagged)', imaplib.Time2Internaldate(1764500000), msg)
assert typ == 'OK' and b'APPENDUID' in data[0], data
ok(m.select('Py2'), 'SELECT Py2')
ok(m.check(), 'CHECK')
assert ok(m.search(None, 'FLAGGED'), 'SEARCH')[0] == b'1'
assert ok(m.uid('SEARCH', 'SUBJECT', '"from python"'), 'UID SEARCH')[0] == b'1'
body = ok(m.fetch('1', '(BODY[])'), 'FETCH BODY[]')[0][1]
assert body == msg, body
ok(m.copy('1', 'INBOX'), 'COPY')
ok(m.uid('COPY', '1', 'INBOX'), 'UID COPY')
ok(m.uid('STORE', '1', '+FLAGS', '(\\Deleted)'), 'UID STORE Deleted')
ok(m.uid('EXPUNGE', '1'), 'UID EXPUNGE')
ok(m.unselect(), 'UNSELECT')
ok(m.select('INBOX', readonly=True), 'EXAMINE')
ro = m.store('1', '+FLAGS', '(\\Seen)')
assert ro[0] == 'NO', ro
ok(m.close(), 'CLOSE')
q = ok(m.getquotaroot('INBOX'), 'GETQUOTAROOT')
assert b'STORAGE' in q[1][0], q
ok(m.delete('Py2.Sub'), 'DELETE')
ok(m.delete('Py2'), 'DELETE parent')
assert m.logout()[0] == 'BYE'
print('imaplib: ok')
