import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { blueprintSchema, computeDeployBody } from './schema.ts';

describe('blueprint schema', () => {
  it('accepts a busybox web server and an OCI layout image', () => {
    expect(blueprintSchema.safeParse({ image: 'busybox', command: ['httpd', '-f', '-p', '8080'], port: 8080, health: { http_path: '/' } }).success).toBe(true);
    expect(blueprintSchema.safeParse({ image: 'oci:/srv/images/app:1.2', command: ['/app'], env: { MODE: 'prod' } }).success).toBe(true);
    expect(computeDeployBody.safeParse({ imvu: 'IMVU-001', blueprint: { files: [{ path: '/run.sh', content: 'echo hi', mode: 0o755 }], command: ['/run.sh'] } }).success).toBe(true);
  });

  it('refuses what would escape or mislead: .. paths, setuid modes, unknown keys, health without a port, no image nor files', () => {
    const bad = [
      { image: 'busybox', files: [{ path: '/../etc/passwd', content: 'x' }], command: ['sh'] },
      { image: 'busybox', files: [{ path: 'relative', content: 'x' }], command: ['sh'] },
      { image: 'busybox', files: [{ path: '/x', content: 'x', mode: 0o4755 }], command: ['sh'] },
      { image: 'busybox', command: ['sh'], privileged: true },
      { image: 'busybox', command: ['sh'], health: {} },
      { command: ['sh'] },
      { image: 'docker.io/library/alpine', command: ['sh'] },
      { image: 'busybox', command: [] },
      { image: 'busybox', command: ['sh'], env: { 'BAD-NAME': 'x' } },
      { image: 'busybox', files: [{ path: '/a', content: 'x' }, { path: '/a', content: 'y' }], command: ['sh'] },
    ];
    for (const b of bad) expect(blueprintSchema.safeParse(b).success, JSON.stringify(b)).toBe(false);
  });

  it('never throws on hostile input, and never transforms what it accepts', () => {
    fc.assert(
      fc.property(fc.anything(), (x) => {
        const r = blueprintSchema.safeParse(x);
        if (r.success) expect(r.data).toEqual(x);
      }),
    );
    fc.assert(
      fc.property(fc.array(fc.string(), { minLength: 1, maxLength: 5 }), (segments) => {
        const path = '/' + segments.join('/');
        const r = blueprintSchema.safeParse({ files: [{ path, content: '' }], command: ['x'] });
        if (r.success) expect(path.split('/').slice(1).every((s) => s !== '' && s !== '.' && s !== '..' && !s.includes('\0'))).toBe(true);
      }),
    );
  });
});
