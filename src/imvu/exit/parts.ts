// The parts of an exit archive that other systems own, in their fields' standard formats: every
// mailbox folder as an mboxrd file (flags in Status/X-Status) with folders.json, and the compute
// workload as an OCI image archive (skopeo, umoci: its root filesystem, blueprint and envelope),
// its data volume once as a plain tar (made while the archive is written), its blueprint and an env.example whose secrets are redacted. Secrets go to secrets.age.
import { createHash } from 'node:crypto';
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify as yamlStringify } from 'yaml';
import type { OpenPlatform } from '../../core/platform.ts';
import { mailboxRoot } from '../../mail/maildir/paths.ts';
import { toCrlf } from '../../mail/maildir/store.ts';
import type { PartBuilder, PartResult } from './build.ts';
import { compresses, type StreamedMember } from './pack.ts';

export function mailPart(platform: OpenPlatform): PartBuilder {
  return async (dir, imvu, progress): Promise<PartResult> => {
    const { listMailboxes, readSubscriptions } = await import('../../mail/imap/mailboxes.ts');
    const { exportMboxToFile, readMaildirFolder } = await import('../../mail/export/mbox.ts');
    const boxes = await platform.store.all<{ address: string }>('SELECT address FROM mailboxes WHERE imvu = ? ORDER BY address', [imvu.id]);
    const folders: Record<string, { folders: { name: string; file: string; messages: { n: number; flags: string; internalDate: string; sha256: string }[] }[]; subscriptions: string[] }> = {};
    let messages = 0;
    mkdirSync(join(dir, 'mailboxes'), { recursive: true, mode: 0o700 });
    for (const [i, { address }] of boxes.entries()) {
      const root = mailboxRoot(platform.dataDir, imvu.id, address);
      const names = existsSync(root) ? listMailboxes(root) : ['INBOX'];
      const entry: (typeof folders)[string] = { folders: [], subscriptions: existsSync(root) ? [...readSubscriptions(root)].sort() : [] };
      for (const name of names) {
        const folderDir = name === 'INBOX' ? root : join(root, `.${name}`);
        const file = name === 'INBOX' ? `mailboxes/${address}.mbox` : `mailboxes/${address}/${name}.mbox`;
        mkdirSync(join(dir, file, '..'), { recursive: true, mode: 0o700 });
        // Read once: the mbox and folders.json are made from the same messages (a delivery in
        // between cannot make them disagree) and 10,000 small files are not opened twice.
        const list = existsSync(folderDir) ? readMaildirFolder(folderDir) : [];
        exportMboxToFile(list, join(dir, file));
        messages += list.length;
        // sha256: of the message as IMAP serves it (CRLF line ends), so a re-import proves it got each one back byte for byte.
        entry.folders.push({
          name,
          file,
          messages: list.map((m, n) => ({ n: n + 1, flags: m.info, internalDate: new Date(m.internalDate).toISOString(), sha256: createHash('sha256').update(toCrlf(m.content)).digest('hex') })),
        });
      }
      folders[address] = entry;
      progress((i + 1) / Math.max(1, boxes.length));
    }
    mkdirSync(join(dir, 'metadata'), { recursive: true, mode: 0o700 });
    writeFileSync(join(dir, 'metadata', 'folders.json'), JSON.stringify(folders, null, 2) + '\n');
    const hashes = await platform.store.all<{ address: string; identity: string; hash: string }>('SELECT address, identity, hash FROM mail_passwords WHERE imvu = ? ORDER BY address', [imvu.id]);
    return {
      status: 'complete',
      detail: `${boxes.length} mailbox(es), ${messages} message(s) as mboxrd`,
      secrets: hashes.length ? { 'mail/app-passwords.json': JSON.stringify(hashes, null, 2) + '\n' } : {},
    };
  };
}

export function computePart(platform: OpenPlatform): PartBuilder {
  return async (dir, imvu, progress): Promise<PartResult> => {
    const row = await platform.store.get<{ blueprint: string }>('SELECT blueprint FROM workloads WHERE imvu = ?', [imvu.id]);
    const { dataVolume } = await import('../../compute/snapshots/index.ts');
    const { packTree, tarSize } = await import('../../compute/snapshots/tree.ts');
    const volume = dataVolume(platform.dataDir, imvu.id);
    if (!row && !existsSync(volume)) return { status: 'complete', detail: 'no workload was ever deployed: nothing to export' };
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const secrets: Record<string, string> = {};
    if (row) {
      const { envExample } = await import('../../compute/blueprint/loader.ts');
      const blueprint = JSON.parse(row.blueprint) as { env?: Record<string, string> };
      writeFileSync(join(dir, 'blueprint.yaml'), `# ${imvu.id}'s workload, as recorded in the ledger (compute.deploy)\n${yamlStringify(blueprint)}`);
      writeFileSync(join(dir, 'env.example'), envExample(blueprint.env));
      if (blueprint.env && Object.keys(blueprint.env).length) secrets['compute/env.json'] = JSON.stringify(blueprint.env, null, 2) + '\n';
    }
    progress(0.1);
    // The data volume as a tar, made while the archive is written (pack.ts): its length is known
    // beforehand from the tree's headers, its bytes are read once, straight into the archive.
    // Read through its path: a loop-mounted volume reads the same.
    const streamed: Record<string, StreamedMember> = {};
    let volumeDetail = 'no data volume';
    if (existsSync(volume)) {
      const files: { path: string; size: number }[] = [];
      const { size, summary } = await tarSize(volume, (path, bytes) => files.push({ path, size: bytes }));
      // Worth compressing if most of the bytes of its largest files compress (a sample of each).
      const largest = files.sort((x, y) => y.size - x.size).slice(0, 8);
      const yes = largest.filter((f) => compresses(f.path, f.size)).reduce((n, f) => n + f.size, 0);
      streamed['data-volume.tar'] = {
        size,
        compresses: yes * 2 >= largest.reduce((n, f) => n + f.size, 0),
        write: async (into) => {
          await packTree(volume, into);
        },
      };
      volumeDetail = `data volume (${summary.entries} entries, ${size} bytes as tar)`;
    }
    progress(0.8);
    // The workload as an OCI image archive: its root filesystem (the image the blueprint names, or
    // the platform's busybox base, with the blueprint's files) and the blueprint and envelope in
    // its config. The data volume is not in it: it is data-volume.tar, once.
    let imageDetail = 'no workload image (no workload was deployed)';
    if (row) {
      try {
        imageDetail = await workloadImage(platform, imvu.id, row.blueprint, join(dir, 'workload.oci.tar'));
      } catch (err) {
        imageDetail = `no workload image: it could not be built here (${(err as Error).message.split('\n')[0]})`;
      }
    }
    progress(1);
    return {
      status: 'complete',
      detail: `${volumeDetail}; ${imageDetail}; blueprint.yaml, env.example with secrets redacted`,
      secrets,
      streamed,
    };
  };
}

/** Builds the workload's root filesystem in a scratch folder and writes it as a one-image OCI archive. */
async function workloadImage(platform: OpenPlatform, imvu: string, blueprintJson: string, file: string): Promise<string> {
  const { buildRootfs } = await import('../../compute/fabric/rootfs.ts');
  const { createSnapshot, exportSnapshot, envelopeOf } = await import('../../compute/snapshots/index.ts');
  const { imvuDir } = await import('../../mail/maildir/paths.ts');
  const scratch = mkdtempSync(join(tmpdir(), 'nexus-exit-image-'));
  try {
    const rootfs = join(scratch, 'rootfs');
    await buildRootfs(rootfs, JSON.parse(blueprintJson) as Parameters<typeof buildRootfs>[1], { dataDir: platform.dataDir, ownDir: imvuDir(platform.dataDir, imvu) });
    const layout = join(scratch, 'layout');
    const snap = await createSnapshot(layout, { imvu, dataDir: rootfs, blueprint: blueprintJson, envelope: await envelopeOf(platform.store, imvu) });
    const out = createWriteStream(file, { mode: 0o600 });
    const written = new Promise<void>((res, rej) => out.on('finish', res).on('error', rej));
    await exportSnapshot(layout, snap.digest, out, 'workload');
    await written;
    return `workload image ${snap.digest} (${snap.entries} entries, tag "workload")`;
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}
