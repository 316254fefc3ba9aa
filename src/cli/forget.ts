// Starting over with a daemon whose data directory was deleted and initialised again: to the CLI,
// a new platform key at a pinned URL looks like an attack (an alarm), and so would a saved
// checkpoint the new log does not extend. `nexus identity forget-platform URL` is the one command
// that says "I started that platform over": it files the pin, the saved checkpoint and any open
// alarm about that URL under NEXUS_HOME/evidence/ (nothing is deleted) and forgets them, so the
// next contact pins what answers there. Receipts stay where they are (they name their platform).
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { normaliseUrl } from './client.ts';
import type { Home } from './home.ts';
import type { Alarm } from './witness.ts';

export interface Forgotten {
  url: string;
  forgotten: boolean;
  platformId: string | null;
  checkpoint: boolean;
  alarms: string[];
  evidence: string | null;
}

export function forgetPlatform(home: Home, rawUrl: string): Forgotten {
  const url = normaliseUrl(rawUrl);
  const pinned = home.platforms()[url];
  const alarmFiles = home.alarmFiles().filter((f) => {
    try {
      return (JSON.parse(readFileSync(f, 'utf8')) as Alarm).url === url;
    } catch {
      return false;
    }
  });
  if (!pinned && !alarmFiles.length) return { url, forgotten: false, platformId: null, checkpoint: false, alarms: [], evidence: null };
  const dir = home.evidenceDir();
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const evidence = join(dir, `${stamp}-forgotten-platform.json`);
  const saved = pinned ? home.savedCheckpoint(pinned.id) : undefined;
  const alarms = alarmFiles.map((f) => JSON.parse(readFileSync(f, 'utf8')) as Alarm);
  writeFileSync(evidence, JSON.stringify({ url, pinned: pinned ?? null, savedCheckpoint: saved ?? null, alarms, forgottenAt: new Date().toISOString() }, null, 2) + '\n', { mode: 0o600 });
  if (pinned && saved !== undefined) renameSync(home.checkpointPath(pinned.id), join(dir, `${stamp}-forgotten-${pinned.id}.note`));
  if (pinned && existsSync(home.watchCursorPath(pinned.id))) renameSync(home.watchCursorPath(pinned.id), join(dir, `${stamp}-forgotten-watch-${pinned.id}.json`));
  for (const f of alarmFiles) renameSync(f, join(dir, `${basename(f, '.json')}.alarm.json`));
  if (pinned) home.unpinPlatform(url);
  return { url, forgotten: true, platformId: pinned?.id ?? alarms[0]?.platformId ?? null, checkpoint: saved !== undefined, alarms: alarms.map((a) => a.code), evidence };
}
