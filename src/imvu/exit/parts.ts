// The parts of an exit archive that other systems own, in their fields' standard formats: every
// mailbox folder as an mboxrd file (flags in Status/X-Status) with folders.json, and the compute
// workload's data volume as a plain tar and as an OCI image archive (skopeo, umoci), with its
// blueprint and an env.example whose secrets are redacted. Secrets go to secrets.age.
import { createHash } from 'node:crypto';
import { createWriteStream, existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify as yamlStringify } from 'yaml';
import type { OpenPlatform } from '../../core/platform.ts';
import { mailboxRoot } from '../../mail/maildir/paths.ts';
import { toCrlf } from '../../mail/maildir/store.ts';
import type { PartBuilder, PartResult } from './build.ts';

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
        if (existsSync(folderDir)) exportMboxToFile(folderDir, join(dir, file));
        else writeFileSync(join(dir, file), '', { mode: 0o600 });
        const list = existsSync(folderDir) ? readMaildirFolder(folderDir) : [];
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
    const { dataVolume, takeSnapshot, exportSnapshot, snapshotLayout } = await import('../../compute/snapshots/index.ts');
    const { packTree } = await import('../../compute/snapshots/tree.ts');
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
    // The data volume as the layer tar, and as an OCI image archive of it with the blueprint and
    // envelope in its config (the same content-addressed form as `nexus snapshot export`).
    if (existsSync(volume)) {
      // packTree ends the stream (a pipeline into it); the file is whole once it has finished.
      const out = createWriteStream(join(dir, 'data-volume.tar'), { mode: 0o600 });
      const done = new Promise<void>((res, rej) => out.on('finish', res).on('error', rej));
      await packTree(volume, out);
      await done;
    }
    progress(0.5);
    const snap = await takeSnapshot(platform.dataDir, platform.store, imvu.id, row?.blueprint);
    const archive = createWriteStream(join(dir, 'data-volume.oci.tar'), { mode: 0o600 });
    const written = new Promise<void>((res, rej) => archive.on('finish', res).on('error', rej));
    await exportSnapshot(snapshotLayout(platform.dataDir, imvu.id), snap.digest, archive);
    await written;
    progress(1);
    const size = existsSync(join(dir, 'data-volume.tar')) ? statSync(join(dir, 'data-volume.tar')).size : 0;
    return {
      status: 'complete',
      detail: `data volume (${snap.entries} entries, ${size} bytes as tar; OCI image ${snap.digest}), blueprint.yaml, env.example with secrets redacted`,
      secrets,
    };
  };
}
