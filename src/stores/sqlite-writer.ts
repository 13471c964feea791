import { once } from 'node:events';
import { Worker } from 'node:worker_threads';

/** A batch the writer thread could not commit: SQLite's code (e.g. SQLITE_BUSY) and message. */
export class SqliteWriteError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

type Waiter = { resolve: () => void; reject: (err: Error) => void };

/**
 * One SQL statement, run over batches of rows by a worker thread holding its own connection to
 * the database file. better-sqlite3 commits on the calling thread, so with sync = "full" every
 * commit on the main thread stops the event loop until the disk answers (0.2–0.5 ms here, on
 * every mail login's audit event); the thread waits instead. The thread starts at the first
 * batch and keeps the process alive only while a batch is in flight.
 */
export class SqliteWriter {
  private thread: { worker: Worker; waiting: Map<number, Waiter> } | null = null;
  private nextId = 1;

  constructor(
    private readonly path: string,
    /** The connection's settings, as the main connection has them (e.g. `synchronous = FULL`). */
    private readonly pragmas: string[],
    private readonly sql: string,
  ) {}

  /** Runs the statement once per row, all in one transaction; settles once it is committed. */
  run(rows: unknown[][]): Promise<void> {
    const { worker, waiting } = this.thread ?? this.start();
    const id = this.nextId++;
    worker.ref();
    return new Promise((resolve, reject) => {
      waiting.set(id, { resolve, reject });
      worker.postMessage({ id, rows });
    });
  }

  /** Waits for the batches in flight, then closes the thread's connection. */
  async close(): Promise<void> {
    if (!this.thread) return;
    const { worker } = this.thread;
    this.thread = null;
    const exited = once(worker, 'exit');
    // Held until the thread is gone: else a process with nothing else left to do would end
    // before the last commit.
    worker.ref();
    // Messages are handled in order: every batch sent before this is committed or refused first.
    worker.postMessage({ close: true });
    await exited;
  }

  private start(): { worker: Worker; waiting: Map<number, Waiter> } {
    const worker = new Worker(new URL('./sqlite-writer-worker.js', import.meta.url), {
      workerData: { path: this.path, pragmas: this.pragmas, sql: this.sql },
    });
    const waiting = new Map<number, Waiter>();
    worker.unref();
    worker.on('message', (m: { id: number; code?: string; message?: string }) => {
      const p = waiting.get(m.id);
      waiting.delete(m.id);
      if (!waiting.size) worker.unref();
      if (m.code !== undefined) p?.reject(new SqliteWriteError(m.code, m.message ?? ''));
      else p?.resolve();
    });
    // A thread that failed to start (file unreadable) or died takes its batches with it; the
    // next batch starts a new one.
    const lost = (err: Error) => {
      if (this.thread?.worker === worker) this.thread = null;
      for (const p of waiting.values()) p.reject(err);
      waiting.clear();
    };
    worker.on('error', lost);
    worker.on('exit', (code) => lost(new Error(`the database writer thread stopped (exit code ${code})`)));
    this.thread = { worker, waiting };
    return this.thread;
  }
}
