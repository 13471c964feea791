// The structure rules of eslint.config.js catch what they are there for: a new import cycle,
// and the core reaching for a store, an edge or a socket.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ESLint } from 'eslint';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(__dirname, '..');
const eslint = new ESLint({ cwd: ROOT });
const rules = (results: ESLint.LintResult[]) => results.flatMap((r) => r.messages.map((m) => m.ruleId));

describe('lint rules', () => {
  it('refuse an import cycle', async () => {
    const dir = join(ROOT, 'test', `.lint-probe-${process.pid}`);
    mkdirSync(dir, { recursive: true });
    try {
      writeFileSync(join(dir, 'a.ts'), "import { b } from './b.js';\nexport const a = () => b();\n");
      writeFileSync(join(dir, 'b.ts'), "import { a } from './a.js';\nexport const b = (): unknown => a;\n");
      expect(rules(await eslint.lintFiles([join(dir, 'a.ts')]))).toContain('import-x/no-cycle');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it('keep the core from importing stores, edges, configuration or sockets', async () => {
    const lint = async (code: string) => rules(await eslint.lintText(code, { filePath: join(ROOT, 'src/core/probe.ts') }));
    expect(await lint("import { EmbeddedStore } from '../stores/embedded-store.js';\nexport const s = EmbeddedStore;\n")).toContain('no-restricted-imports');
    expect(await lint("import { loadConfig } from '../config/load.js';\nexport const l = loadConfig;\n")).toContain('no-restricted-imports');
    expect(await lint("import { connect } from 'node:net';\nexport const c = connect;\n")).toContain('no-restricted-imports');
    expect(await lint("import { isIP } from 'node:net';\nexport const i = isIP;\n")).not.toContain('no-restricted-imports');
  }, 60_000);
});
