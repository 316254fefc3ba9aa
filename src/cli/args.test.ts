// The option parsers that catch usage errors before anything is signed (property tests): what
// they refuse never reaches the daemon, so they must refuse what gate 0 would, and accept what it takes.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { isIP } from 'node:net';
import { checkRecordValue, imvuName, jurisdiction, recordName, text } from './args.ts';
import { IMVU_NAME_RE, JURISDICTIONS } from '../core/policy/vocabulary.ts';
import { EXIT } from './errors.ts';

const accepts = (f: () => unknown) => {
  try {
    f();
    return true;
  } catch {
    return false;
  }
};

describe('option parsers', () => {
  it('imvuName takes exactly what the schema takes; nothing with a space', () => {
    fc.assert(fc.property(fc.string({ maxLength: 80 }), (s) => {
      expect(accepts(() => imvuName(s))).toBe(IMVU_NAME_RE.test(s));
    }));
    fc.assert(fc.property(fc.string(), fc.string(), (a, b) => {
      expect(accepts(() => imvuName(`${a} ${b}`))).toBe(false);
    }));
    expect(imvuName('Art_Gallery-2')).toBe('Art_Gallery-2');
  });

  it('jurisdiction takes the codes exactly and tells a lower-case one its upper-case form', () => {
    for (const code of JURISDICTIONS) {
      expect(jurisdiction(code)).toBe(code);
      expect(() => jurisdiction(code.toLowerCase())).toThrow(`did you mean '${code}'?`);
    }
    fc.assert(fc.property(fc.string({ maxLength: 40 }), (s) => {
      expect(accepts(() => jurisdiction(s))).toBe((JURISDICTIONS as readonly string[]).includes(s));
    }));
  });

  it('recordName refuses whitespace and empty labels, takes ordinary names', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 30 }), fc.constantFrom(' ', '\t', '\n', '..'), fc.string({ maxLength: 30 }), (a, bad, b) => {
        expect(accepts(() => recordName(`${a}${bad}${b}`))).toBe(false);
      }),
    );
    const label = fc.stringMatching(/^[a-z0-9_-]{1,20}$/);
    fc.assert(fc.property(fc.array(label, { minLength: 1, maxLength: 4 }), (labels) => {
      expect(recordName(labels.join('.'))).toBe(labels.join('.'));
    }));
    expect(recordName('@')).toBe('@');
    expect(recordName('WWW')).toBe('www');
  });

  it('an A or AAAA value is taken exactly when it is an address of that family (a usage error otherwise)', () => {
    fc.assert(fc.property(fc.ipV4(), (ip) => {
      expect(accepts(() => checkRecordValue('A', ip))).toBe(true);
    }));
    fc.assert(fc.property(fc.ipV6(), (ip) => {
      expect(accepts(() => checkRecordValue('AAAA', ip))).toBe(true);
    }));
    fc.assert(
      fc.property(fc.string({ maxLength: 50 }), (s) => {
        expect(accepts(() => checkRecordValue('A', s))).toBe(isIP(s) === 4);
        expect(accepts(() => checkRecordValue('AAAA', s))).toBe(isIP(s) === 6);
      }),
    );
    expect(() => checkRecordValue('A', '999.1.2.3')).toThrow(expect.objectContaining({ code: EXIT.usage }));
  });

  it('text(max) takes 1 to max characters, not only spaces', () => {
    fc.assert(fc.property(fc.string({ maxLength: 600 }), (s) => {
      expect(accepts(() => text(500)(s))).toBe(s.trim().length > 0 && s.length <= 500);
    }));
  });
});
