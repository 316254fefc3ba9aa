import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir, homedir } from 'node:os';
import { join } from 'node:path';
import { generateKeyPair } from '../core/identity/keys.ts';
import { Home, defaultHome } from './home.ts';
import { normaliseUrl } from './client.ts';
import { EXIT } from './errors.ts';

const dir = mkdtempSync(join(tmpdir(), 'nexus-home-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('NEXUS_HOME', () => {
  it('is NEXUS_HOME, else $XDG_CONFIG_HOME/nexus, else ~/.config/nexus', () => {
    expect(defaultHome({ NEXUS_HOME: '/a/b', XDG_CONFIG_HOME: '/x' })).toBe('/a/b');
    expect(defaultHome({ XDG_CONFIG_HOME: '/x' })).toBe('/x/nexus');
    expect(defaultHome({})).toBe(join(homedir(), '.config', 'nexus'));
  });

  it('keeps keys 0600 in a 0700 directory and resolves identities by name or id', () => {
    const home = new Home(join(dir, 'h'));
    const { privateKey } = generateKeyPair();
    const id = home.saveIdentity('alice', privateKey);
    expect(statSync(home.keyPath('alice')).mode & 0o777).toBe(0o600);
    expect(statSync(join(home.dir, 'keys')).mode & 0o777).toBe(0o700);
    expect(home.signer('alice').id).toBe(id);
    expect(home.signer(id).name).toBe('alice');
    expect(() => home.signer('bob')).toThrow(expect.objectContaining({ code: EXIT.usage, message: expect.stringMatching(/no key for identity 'bob'.*local identities: alice/) }));
  });

  it('a staged key that is discarded leaves no file and no directory behind', () => {
    const home = new Home(join(dir, 'fresh', 'h'));
    const created = home.stageKey('bob', generateKeyPair().privateKey);
    expect(statSync(home.stagedKeyPath('bob')).mode & 0o777).toBe(0o600);
    home.discardStaged('bob', created);
    expect(() => statSync(home.dir)).toThrow();
    expect(home.identities()).toEqual({});
  });

  it('normalises daemon URLs and rejects what is not one (usage error)', () => {
    expect(normaliseUrl('http://127.0.0.1:7600/')).toBe('http://127.0.0.1:7600');
    expect(() => normaliseUrl('127.0.0.1:7600')).toThrow(expect.objectContaining({ code: EXIT.usage }));
    expect(() => normaliseUrl('ftp://x')).toThrow(expect.objectContaining({ code: EXIT.usage }));
  });
});
