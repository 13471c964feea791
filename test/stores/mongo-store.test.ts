import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { MongoStore } from '../../src/stores/mongo-store.js';
import { storeContract } from './store-contract.js';

// MongoDB cannot be installed on the CI machines: the contract runs whenever MONGODB_URL
// points at a server, and shows as skipped otherwise.
const url = process.env.MONGODB_URL;

storeContract(
  'MongoDB',
  async () => MongoStore.connect(url!, `postern_test_${randomBytes(4).toString('hex')}`),
  { skip: !url },
);

describe('MongoDB store faults', () => {
  it('reports an unreachable server as a temporary failure', async () => {
    // Port 9 (discard) on loopback: nothing listens there.
    const attempt = MongoStore.connect('mongodb://127.0.0.1:9/postern?serverSelectionTimeoutMS=500&connectTimeoutMS=500');
    await expect(attempt).rejects.toMatchObject({ code: 'temporary_failure', temporary: true });
  });
});
