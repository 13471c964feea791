// Runs in a worker thread with its own connection to the embedded database: each batch is one
// transaction, and its commit's wait for the disk (sync = "full") happens here, never on the
// main event loop. Plain JavaScript so the same file serves the sources and the build.
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';

const db = new Database(workerData.path);
for (const p of workerData.pragmas) db.pragma(p);
const statement = db.prepare(workerData.sql);
const write = db.transaction((rows) => {
  for (const row of rows) statement.run(...row);
});

parentPort.on('message', (m) => {
  if (m.close) {
    db.close();
    parentPort.close();
    return;
  }
  try {
    write(m.rows);
    parentPort.postMessage({ id: m.id });
  } catch (err) {
    parentPort.postMessage({ id: m.id, code: String(err?.code ?? ''), message: String(err?.message ?? err) });
  }
});
