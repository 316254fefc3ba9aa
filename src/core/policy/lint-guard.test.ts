import { describe, expect, it } from 'vitest';
import { ESLint } from 'eslint';

// The projection writer is private to the chokepoint; the lint rule is what keeps it so.
describe('projection writer import guard', () => {
  const eslint = new ESLint({ cwd: process.cwd() });
  const source = "import { applyCommand } from '../core/policy/projection-writer.ts';\nexport const x = applyCommand;\n";

  it('fails any module other than the chokepoint that imports the writer', async () => {
    const [result] = await eslint.lintText(source, { filePath: 'src/api/sneaky.ts' });
    expect(result!.messages.map((m) => m.ruleId)).toContain('no-restricted-imports');
  });

  it('allows the chokepoint itself', async () => {
    const [result] = await eslint.lintText(source.replace('../core/policy/', './'), { filePath: 'src/core/policy/chokepoint.ts' });
    expect(result!.messages.filter((m) => m.ruleId === 'no-restricted-imports')).toEqual([]);
  });
});
