import js from '@eslint/js';
import tseslint from 'typescript-eslint';

// The projection writer is the only code allowed to mutate the queryable state. Only the
// chokepoint may import it; everything else must submit a signed command.
const writerGuard = {
  patterns: [
    {
      group: ['**/projection-writer', '**/projection-writer.js', '**/projection-writer.ts'],
      message: 'Projections are written only by the chokepoint (src/core/policy/chokepoint.ts). Submit a signed command instead.',
    },
  ],
};

export default tseslint.config(
  { ignores: ['node_modules/**', 'dist/**', 'coverage/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { console: 'readonly', process: 'readonly', Buffer: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly', setInterval: 'readonly', clearInterval: 'readonly', URL: 'readonly' } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-restricted-imports': ['error', writerGuard],
    },
  },
  {
    files: ['src/core/policy/chokepoint.ts'],
    rules: { 'no-restricted-imports': 'off' },
  },
);
