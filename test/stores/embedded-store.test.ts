import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { EmbeddedStore } from '../../src/stores/embedded-store.js';
import { newUser, storeContract } from './store-contract.js';

const dir = mkdtempSync(join(tmpdir(), 'postern-store-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;

storeContract('embedded (SQLite file)', async () => new EmbeddedStore(join(dir, `db${n++}.sqlite`)));

describe('embedded store durability', () => {
  it('keeps users and audit across a restart', async () => {
    const path = join(dir, 'restart.sqlite');
    const a = new EmbeddedStore(path);
    await a.init();
    await a.users.create(newUser('alice'), new Date());
    await a.close();
    const b = new EmbeddedStore(path);
    await b.init();
    expect((await b.users.findByName('alice'))?.username).toBe('alice');
    await b.close();
  });

  it('answers a fault with a temporary error, not a wrong answer', async () => {
    const s = new EmbeddedStore(join(dir, 'closed.sqlite'));
    await s.init();
    await s.close();
    await expect(s.users.findByName('alice')).rejects.toMatchObject({ code: 'temporary_failure', temporary: true });
  });
});
