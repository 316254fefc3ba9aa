// The exit process inside the daemon: builds the archive of every IMVU that is exiting and has
// none yet (also after a restart: a build cut short is started again from the beginning), records
// it ready in the ledger, and keeps the exit's clock: it ends an unconfirmed exit after the
// configured number of days (gate 13 holds it to at least EXIT_CONFIRM_DAYS after the archive was
// ready), releases an exited IMVU after the grace and deletes its data after the retention.
// Progress is kept in DATA/exports/<IMVU>/status.json for `nexus imvu exit-status`.
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../../core/durable.ts';
import type { OpenPlatform } from '../../core/platform.ts';
import { EXIT_CONFIRM_DAYS, EXIT_GRACE_DAYS, EXIT_RETENTION_DAYS } from '../../core/policy/vocabulary.ts';
import { imvuDir } from '../../mail/maildir/paths.ts';
import { archiveName, buildExitArchive, exportDir, type PartBuilder } from './build.ts';
import { PART_NAMES, type PartName } from './manifest.ts';

export interface ExitStatus {
  imvu: string;
  state: 'building' | 'ready' | 'failed';
  startedAt: string;
  updatedAt: string;
  parts: Record<string, { fraction: number; status?: string; detail?: string }>;
  archive?: { name: string; sha256: string; size: number; treeSize: number };
  error?: string;
}

export interface ExitServiceOptions {
  platform: OpenPlatform;
  checkpointNote(size: number): Promise<string | undefined>;
  parts?: Partial<Record<'mail' | 'compute', PartBuilder>>;
  /** Days after the archive is ready before an unconfirmed exit ends (at least EXIT_CONFIRM_DAYS). */
  confirmDays?: number;
  /** What other systems stop or delete for an IMVU whose resources are released / data deleted. */
  onRelease?: (imvu: string) => Promise<void>;
  log?: { info(o: object, m: string): void; warn(o: object, m: string): void };
  /** How often the exit's clock is checked (default 10 minutes). */
  clockIntervalMs?: number;
}

const DAY_MS = 86_400_000;

export function statusFile(dataDir: string, imvu: string): string {
  return join(exportDir(dataDir, imvu), 'status.json');
}

export function readExitStatus(dataDir: string, imvu: string): ExitStatus | undefined {
  const file = statusFile(dataDir, imvu);
  if (!existsSync(file)) return undefined;
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as ExitStatus;
  } catch {
    return undefined;
  }
}

export class ExitService {
  private running: Promise<void> | undefined;
  private again = false;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly opts: ExitServiceOptions) {}

  start(): void {
    this.poke();
    this.timer = setInterval(() => void this.tick().catch((err: unknown) => this.opts.log?.warn({ err }, 'exit clock failed')), this.opts.clockIntervalMs ?? 600_000);
    this.timer.unref();
  }

  /** Something was committed: build any archive that is due (one build at a time). */
  poke(): void {
    if (this.closed) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.buildDue()
      .catch((err: unknown) => this.opts.log?.warn({ err }, 'exit build failed'))
      .finally(() => {
        this.running = undefined;
        if (this.again && !this.closed) {
          this.again = false;
          this.poke();
        }
      });
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    await this.running;
  }

  /** Waits until the builds now due are done (tests). */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  private async buildDue(): Promise<void> {
    const p = this.opts.platform;
    const due = await p.store.all<{ imvu: string }>(
      // CROSS JOIN: exits first (SQLite keeps that order), so this costs the exits, not the IMVUs.
      "SELECT e.imvu AS imvu FROM exits e CROSS JOIN imvus i ON i.id = e.imvu WHERE i.status = 'exiting' AND e.ready_at IS NULL ORDER BY e.entry",
    );
    for (const { imvu } of due) {
      if (this.closed) return;
      await this.build(imvu);
    }
  }

  private async recipientsOf(imvu: string): Promise<string[] | undefined> {
    const row = await this.opts.platform.store.get<{ entry: number }>('SELECT entry FROM exits WHERE imvu = ?', [imvu]);
    if (!row) return undefined;
    const [raw] = await this.opts.platform.store.readEntries(Number(row.entry), Number(row.entry) + 1);
    const body = raw ? (JSON.parse(raw.toString('utf8')) as { command: { command: { body: { recipients?: string[] } } } }).command.command.body : undefined;
    return body?.recipients;
  }

  private async build(imvu: string): Promise<void> {
    const p = this.opts.platform;
    mkdirSync(exportDir(p.dataDir, imvu), { recursive: true, mode: 0o700 });
    const now = () => new Date().toISOString();
    const status: ExitStatus = { imvu, state: 'building', startedAt: now(), updatedAt: now(), parts: Object.fromEntries([...PART_NAMES, 'archive'].map((n) => [n, { fraction: 0 }])) };
    let last = 0;
    const save = (force = false) => {
      if (!force && Date.now() - last < 250) return;
      last = Date.now();
      status.updatedAt = now();
      writeFileAtomic(statusFile(p.dataDir, imvu), JSON.stringify(status, null, 2) + '\n', 0o600);
    };
    save(true);
    this.opts.log?.info({ imvu }, 'exit: building the archive');
    try {
      const recipients = await this.recipientsOf(imvu);
      const built = await buildExitArchive(
        {
          platform: p,
          checkpointNote: this.opts.checkpointNote,
          ...(this.opts.parts ? { parts: this.opts.parts } : {}),
          ...(recipients ? { recipients } : {}),
          onProgress: (part: PartName | 'archive', fraction: number) => {
            status.parts[part] = { ...status.parts[part], fraction };
            save();
          },
        },
        imvu,
      );
      for (const [name, part] of Object.entries(built.parts)) status.parts[name] = { fraction: 1, status: part.status, detail: part.detail };
      status.parts.archive = { fraction: 1, status: 'complete', detail: archiveName(imvu) };
      const receipt = await p.chokepoint.submit(
        p.chokepoint.platformCommand('imvu.exit.ready', { imvu, archive: { sha256: built.sha256, size: built.size }, manifest: built.manifestSha256, treeSize: built.treeSize }),
      );
      if (!receipt.allowed) throw new Error(`imvu.exit.ready was refused: ${receipt.gates.filter((g) => g.status === 'deny').map((g) => g.reason).join('; ')}`);
      status.state = 'ready';
      status.archive = { name: archiveName(imvu), sha256: built.sha256, size: built.size, treeSize: built.treeSize };
      save(true);
      this.opts.log?.info({ imvu, sha256: built.sha256, size: built.size, entry: receipt.index }, 'exit: archive ready');
    } catch (err) {
      status.state = 'failed';
      status.error = (err as Error).message;
      save(true);
      this.opts.log?.warn({ imvu, err }, 'exit: the archive could not be built; it is retried on the next commit or clock tick');
    }
  }

  /** The exit's clock: end unconfirmed exits, release and delete after the grace and the retention. */
  async tick(at = new Date()): Promise<void> {
    const p = this.opts.platform;
    const confirmDays = Math.max(EXIT_CONFIRM_DAYS, this.opts.confirmDays ?? EXIT_CONFIRM_DAYS);
    const rows = await p.store.all<{ imvu: string; status: string; ready_at: string | null; exited_at: string | null; released_at: string | null; deleted_at: string | null }>(
      'SELECT e.imvu AS imvu, i.status AS status, e.ready_at AS ready_at, e.exited_at AS exited_at, e.released_at AS released_at, e.deleted_at AS deleted_at FROM exits e CROSS JOIN imvus i ON i.id = e.imvu',
    );
    const age = (iso: string) => (at.getTime() - Date.parse(iso)) / DAY_MS;
    for (const r of rows) {
      if (r.status === 'exiting' && r.ready_at && age(r.ready_at) >= confirmDays) await this.platform('imvu.exit.expire', { imvu: r.imvu });
      else if (r.status === 'exited' && r.exited_at && !r.released_at && age(r.exited_at) >= EXIT_GRACE_DAYS) {
        await this.opts.onRelease?.(r.imvu);
        await this.platform('imvu.purge', { imvu: r.imvu, stage: 'release' });
      } else if (r.status === 'exited' && r.exited_at && r.released_at && !r.deleted_at && age(r.exited_at) >= EXIT_RETENTION_DAYS) {
        rmSync(imvuDir(p.dataDir, r.imvu), { recursive: true, force: true });
        rmSync(exportDir(p.dataDir, r.imvu), { recursive: true, force: true });
        await this.platform('imvu.purge', { imvu: r.imvu, stage: 'delete' });
      }
    }
    if (!this.running) this.poke();
  }

  private async platform(type: 'imvu.exit.expire' | 'imvu.purge', body: { imvu: string; stage?: string }): Promise<void> {
    const p = this.opts.platform;
    const r = await p.chokepoint.submit(p.chokepoint.platformCommand(type, body));
    if (r.allowed) this.opts.log?.info({ ...body, entry: r.index }, `exit: ${type}`);
    else this.opts.log?.warn({ ...body, entry: r.index, gates: r.gates.filter((g) => g.status === 'deny') }, `exit: ${type} refused`);
  }
}
