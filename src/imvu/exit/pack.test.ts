// The archive writer against the standard tools: gzip members framed here (stored blocks) and by
// zlib, read back by gzip, GNU tar and Python; a member streamed in (the data volume's tar, whose
// length tarSize gives beforehand) byte for byte; the digests against sha256sum.
import { describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { packTree, tarSize } from '../../compute/snapshots/tree.ts';
import { ParallelHash } from './hash-worker.ts';
import { packArchive, storedBlocks, type StreamedMember } from './pack.ts';

const sha256sum = (file: string) => execFileSync('sha256sum', [file], { encoding: 'utf8' }).split(' ')[0];

/** A tree with what changes tar headers: long names (pax), non-ASCII names, links, empty files, folders. */
function tree(dir: string): void {
  mkdirSync(join(dir, 'a', 'b'), { recursive: true });
  writeFileSync(join(dir, 'a', 'b', 'random.bin'), randomBytes(3 * 65535 + 17));
  writeFileSync(join(dir, 'empty'), '');
  writeFileSync(join(dir, `${'long-name-'.repeat(12)}.txt`), 'x'.repeat(513));
  mkdirSync(join(dir, 'd'.repeat(120)));
  writeFileSync(join(dir, 'd'.repeat(120), 'f'.repeat(90)), 'deep');
  writeFileSync(join(dir, 'héllo-wörld.txt'), 'utf-8 name');
  symlinkSync('a/b/random.bin', join(dir, 'link'));
  symlinkSync('t'.repeat(150), join(dir, 'long-link'));
}

describe('exit archive writer', () => {
  it('tarSize gives the exact length of the tar packTree writes, without reading the files', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tarsize-'));
    try {
      tree(join(dir, 't'));
      let written = 0;
      await packTree(
        join(dir, 't'),
        new Writable({
          write(c: Buffer, _e, cb) {
            written += c.length;
            cb();
          },
        }),
      );
      const { size, summary } = await tarSize(join(dir, 't'));
      expect(size).toBe(written);
      expect(summary.entries).toBe(10);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('writes stored and zlib gzip members that gzip, GNU tar and Python read back, a streamed member byte for byte', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pack-'));
    try {
      const root = join(dir, 'root');
      mkdirSync(join(root, 'compute'), { recursive: true });
      mkdirSync(join(root, 'mail'));
      writeFileSync(join(root, 'mail', 'box.mbox'), 'From a@b Thu Jan  1 00:00:00 2026\nSubject: hi\n\nbody\n'.repeat(2000));
      // Incompressible and over 1 MiB: stored blocks, several of them, a partial last one.
      writeFileSync(join(root, 'compute', 'random.bin'), randomBytes((1 << 20) + 12345));
      const vol = join(dir, 'volume');
      tree(vol);
      const { size } = await tarSize(vol);
      const streamed = new Map<string, StreamedMember>([['compute/data-volume.tar', { size, compresses: false, write: (into) => packTree(vol, into).then(() => undefined) }]]);
      const files = ['compute/data-volume.tar', 'compute/random.bin', 'mail/box.mbox'];
      const archive = join(dir, 'out.tar.gz');
      const packed = await packArchive(root, 'TOP', files, new Map(), 'MANIFEST.json', (l) => JSON.stringify(l), archive, undefined, streamed);
      execFileSync('gzip', ['-t', archive]);
      expect(packed.sha256).toBe(sha256sum(archive));
      expect(packed.size).toBe(readFileSync(archive).length);
      const out = join(dir, 'x');
      mkdirSync(out);
      execFileSync('tar', ['-xzf', archive, '-C', out]);
      for (const f of packed.files) expect(sha256sum(join(out, 'TOP', f.path)), f.path).toBe(f.sha256);
      expect(readFileSync(join(out, 'TOP', 'compute', 'random.bin'))).toEqual(readFileSync(join(root, 'compute', 'random.bin')));
      // The streamed member is the tar packTree writes, and GNU tar reads it.
      const chunks: Buffer[] = [];
      await packTree(
        vol,
        new Writable({
          write(c: Buffer, _e, cb) {
            chunks.push(c);
            cb();
          },
        }),
      );
      expect(readFileSync(join(out, 'TOP', 'compute', 'data-volume.tar')).equals(Buffer.concat(chunks))).toBe(true);
      expect(execFileSync('tar', ['-tf', join(out, 'TOP', 'compute', 'data-volume.tar')], { encoding: 'utf8' })).toContain('a/b/random.bin');
      expect(JSON.parse(readFileSync(join(out, 'TOP', 'MANIFEST.json'), 'utf8'))).toEqual(packed.files);
      const py = execFileSync('python3', ['-c', 'import gzip,hashlib,sys; print(hashlib.sha256(gzip.open(sys.argv[1]).read()).hexdigest())', archive], { encoding: 'utf8' }).trim();
      expect(py).toBe(createHash('sha256').update(execFileSync('gzip', ['-dc', archive], { maxBuffer: 64 << 20 })).digest('hex'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);

  it('fails, leaving no complete archive, when a streamed member is not the length it announced', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pack-'));
    try {
      mkdirSync(join(dir, 'root'));
      const vol = join(dir, 'volume');
      tree(vol);
      const { size } = await tarSize(vol);
      // The tree changes between the length and the bytes: one more file.
      writeFileSync(join(vol, 'late'), 'late');
      const streamed = new Map<string, StreamedMember>([['data-volume.tar', { size, compresses: false, write: (into) => packTree(vol, into).then(() => undefined) }]]);
      const archive = join(dir, 'out.tar.gz');
      await expect(packArchive(join(dir, 'root'), 'TOP', ['data-volume.tar'], new Map(), 'MANIFEST.json', (l) => JSON.stringify(l), archive, undefined, streamed)).rejects.toThrow();
      if (existsSync(archive)) expect(() => execFileSync('tar', ['-tzf', archive], { stdio: 'pipe' })).toThrow();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('frames stored blocks of at most 65535 bytes without copying', () => {
    const b = randomBytes(2 * 65535 + 1);
    const parts = storedBlocks(b);
    expect(parts.length).toBe(6);
    expect(parts[0]).toEqual(Buffer.from([0, 0xff, 0xff, 0, 0]));
    expect(parts[4]).toEqual(Buffer.from([0, 1, 0, 0xfe, 0xff]));
    expect(parts[5]!.buffer).toBe(b.buffer);
  });

  it('hashes on a worker thread what createHash hashes here, across batch boundaries', async () => {
    const h = new ParallelHash();
    const ref = createHash('sha256');
    let size = 0;
    for (const n of [0, 1, 4 << 20, (4 << 20) - 1, 3, 9 << 20, 65535]) {
      const b = randomBytes(n);
      ref.update(b);
      await h.update(b);
      b.fill(0); // the caller may reuse its buffer at once
      size += n;
    }
    expect(await h.digest()).toEqual({ sha256: ref.digest('hex'), size });
  });
});
