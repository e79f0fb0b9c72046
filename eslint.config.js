import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/**
 * Imports flow one way (DESIGN.md): core/ imports nothing of ours; platform/ only core/;
 * hardware/ only core/ and platform/; terminal/ only those three; vendor-server/ and
 * mall-sync/ only core/ and platform/. Nothing imports bench/ or test/.
 */
const folders = ['core', 'platform', 'hardware', 'terminal', 'vendor-server', 'mall-sync', 'bench', 'test'];
const mayImport = {
  core: [],
  platform: ['core'],
  hardware: ['core', 'platform'],
  terminal: ['core', 'platform', 'hardware'],
  'vendor-server': ['core', 'platform'],
  'mall-sync': ['core', 'platform'],
};

function layerRule(folder) {
  const forbidden = folders.filter((f) => f !== folder && !mayImport[folder].includes(f));
  return {
    files: [`${folder}/**/*.ts`, `${folder}/**/*.js`],
    rules: {
      'no-restricted-imports': ['error', {
        patterns: [{
          regex: `^(\\.\\./)+(${forbidden.join('|')})(/|$)`,
          message: `${folder}/ may import only ${mayImport[folder].length === 0 ? 'its own files' : mayImport[folder].map((f) => `${f}/`).join(', ')} (DESIGN.md: imports flow one way).`,
        }],
      }],
    },
  };
}

export default tseslint.config(
  { ignores: ['node_modules/**', 'data/**', 'dist/**', '.tmp/**', 'bench/results/**', 'coverage/**', '**/*.min.js'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      globals: {
        process: 'readonly', console: 'readonly', Buffer: 'readonly', setTimeout: 'readonly',
        clearTimeout: 'readonly', setInterval: 'readonly', clearInterval: 'readonly', setImmediate: 'readonly',
        URL: 'readonly', TextEncoder: 'readonly', TextDecoder: 'readonly', performance: 'readonly',
        document: 'readonly', window: 'readonly', fetch: 'readonly', AbortController: 'readonly',
      },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
      'no-console': 'off',
      eqeqeq: ['error', 'always'],
    },
  },
  ...Object.keys(mayImport).map(layerRule),
);
