import { randomBytes } from 'node:crypto';
import { MongoClient, MongoNetworkError, MongoParseError, MongoServerError } from 'mongodb';
import { afterAll, describe, expect, it } from 'vitest';
import { clientSettings, MongoStore, storeError } from '../../src/stores/mongo-store.js';
import { storeContract } from './store-contract.js';

// MongoDB cannot be installed on the CI machines: the contract runs whenever MONGODB_URL
// points at a server, and shows as skipped otherwise.
const url = process.env.MONGODB_URL;
const testDbs: string[] = [];

storeContract(
  'MongoDB',
  async () => {
    const name = `postern_test_${randomBytes(4).toString('hex')}`;
    testDbs.push(name);
    return MongoStore.connect(url!, name);
  },
  { skip: !url },
);

afterAll(async () => {
  if (!url || !testDbs.length) return;
  const client = await new MongoClient(url).connect();
  for (const name of testDbs) await client.db(name).dropDatabase();
  await client.close();
});

describe('MongoDB client settings', () => {
  it('bounds every wait and pins majority writes and primary reads by default', () => {
    const { options, dbName } = clientSettings('mongodb://db1,db2/mail?replicaSet=rs0');
    expect(options).toMatchObject({
      serverSelectionTimeoutMS: 5000,
      connectTimeoutMS: 5000,
      socketTimeoutMS: 10_000,
      waitQueueTimeoutMS: 5000,
      writeConcern: { w: 'majority' },
      readPreference: 'primary',
      retryWrites: true,
      retryReads: true,
      appName: 'postern',
    });
    expect(dbName).toBe('mail');
  });

  it('leaves what the URL sets to the URL, whatever its case', () => {
    const { options } = clientSettings('mongodb://db/postern?w=1&SOCKETTIMEOUTMS=500&retryWrites=false');
    expect(options).not.toHaveProperty('writeConcern');
    expect(options).not.toHaveProperty('socketTimeoutMS');
    expect(options).not.toHaveProperty('retryWrites');
    expect(options).toHaveProperty('readPreference', 'primary');
  });

  it('writes to "postern", never the driver\'s "test", when the URL names no database', () => {
    expect(clientSettings('mongodb://db').dbName).toBe('postern');
    expect(clientSettings('mongodb://db/?replicaSet=rs0').dbName).toBe('postern');
    expect(clientSettings('mongodb+srv://u:p@cluster.example.org/mail%2Dprod').dbName).toBe('mail-prod');
  });
});

describe('MongoDB errors', () => {
  const server = (code: number) => new MongoServerError({ code, errmsg: `code ${code}` });

  it('turns a duplicate key into a conflict', () => {
    expect(storeError(server(11000), 'user "alice"')).toMatchObject({ code: 'conflict', temporary: false });
  });

  it('says when MongoDB refuses postern itself, so the operator fixes the URL instead of waiting', () => {
    for (const err of [server(18), server(13), new MongoParseError('Invalid scheme')]) {
      const mapped = storeError(err, 'users');
      // Still "try again later" for a mail client, never "wrong password".
      expect(mapped).toMatchObject({ code: 'store_misconfigured', temporary: true, message: expect.stringContaining('store.mongodb_url') });
    }
  });

  it('answers network faults and elections with a temporary failure', () => {
    expect(storeError(new MongoNetworkError('connection reset'), 'users')).toMatchObject({ code: 'temporary_failure', temporary: true });
    expect(storeError(server(10107), 'users')).toMatchObject({ code: 'temporary_failure', temporary: true }); // NotWritablePrimary
  });

  it('lets a programming error through as it is', () => {
    const bug = new TypeError('x is undefined');
    expect(storeError(bug, 'users')).toBe(bug);
  });
});

describe('MongoDB store faults', () => {
  it('reports an unreachable server as a temporary failure', async () => {
    // Port 9 (discard) on loopback: nothing listens there.
    const attempt = MongoStore.connect('mongodb://127.0.0.1:9/postern?serverSelectionTimeoutMS=500&connectTimeoutMS=500');
    await expect(attempt).rejects.toMatchObject({ code: 'temporary_failure', temporary: true });
  });

  it('reports a malformed URL as a misconfiguration', async () => {
    await expect(MongoStore.connect('mongodb://127.0.0.1:9/postern?w=majority&notAnOption=1&readPreference=nonsense')).rejects.toMatchObject({
      code: 'store_misconfigured',
    });
  });
});
