import { fileURLToPath } from 'node:url';
// `npm run bench`: postern's speed and memory, each figure beside a baseline measured in
// the same run (these machines are noisy; ratios travel, absolute numbers do not).
//   --json          print JSON only
//   --idle N        idle IMAP sessions for the memory figures (default 4000; a process holds
//                   two descriptors per session, so `ulimit -n` must allow twice this)
//   --seconds S     length of each timed phase (default 5)
//   --memory-only   only the idle-session memory figures (they vary most from run to run)
//   --settle S      seconds a process is left idle before its RSS is read (default 20)
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { ImapFlow } from 'imapflow';
import * as openpgp from 'openpgp';
import { createCore } from '../../src/core/core.js';
import { ManualClock } from '../../src/core/clock.js';
import { MemoryCredentialCache } from '../../src/stores/credential-cache.js';
import { EmbeddedStore } from '../../src/stores/embedded-store.js';
import { MemoryLimiter } from '../../src/stores/memory-limiter.js';
import { WorkerPool } from '../../src/workers/worker-pool.js';
import { testSettings } from '../helpers/core.js';
import { startDovecot, type Dovecot } from '../helpers/dovecot.js';
import { freePort, waitFor } from '../helpers/ports.js';
import { fetchFirstMessage } from '../helpers/imap-fetch.js';
import { RawClient } from '../helpers/raw-client.js';

const args = process.argv.slice(2);
const flag = (name: string, dflt: number) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const JSON_ONLY = args.includes('--json');
const MEMORY_ONLY = args.includes('--memory-only');
const IDLE = flag('--idle', 4000);
const SECONDS = flag('--seconds', 5);
/** How long a relay process is left alone before its RSS is read. */
const SETTLE_MS = flag('--settle', 20) * 1000;
const CORES = availableParallelism();
const log = (...a: unknown[]) => {
  if (!JSON_ONLY) console.error(...a);
};

/** Runs `op` from `concurrency` loops for `seconds`; returns operations per second. */
async function rate(concurrency: number, seconds: number, op: (worker: number) => Promise<void>): Promise<number> {
  const end = Date.now() + seconds * 1000;
  let n = 0;
  const start = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: concurrency }, async (_, w) => {
      while (Date.now() < end) {
        await op(w);
        n++;
      }
    }),
  );
  return n / (Number(process.hrtime.bigint() - start) / 1e9);
}

const PASSWORD = 'Bench-pass-123';

async function hashingFigures() {
  log('bcrypt ceiling and cold logins...');
  const pool = new WorkerPool({ cost: 12, threads: CORES, maxQueue: 10_000 });
  const hash = await pool.hash(PASSWORD);
  await rate(CORES, 1, () => pool.verify(PASSWORD, hash).then(() => undefined)); // warm the threads
  const raw = await rate(CORES * 2, SECONDS, () => pool.verify(PASSWORD, hash).then(() => undefined));

  const bcryptjs = (await import('bcryptjs')).default;
  const native = (await import('bcrypt')).default;
  const jsOne = await rate(1, 2, async () => void bcryptjs.compareSync(PASSWORD, hash));
  const nativeOne = await rate(1, 2, async () => void native.compareSync(PASSWORD, hash));

  const clock = new ManualClock(Date.now());
  const store = new EmbeddedStore(':memory:');
  await store.init();
  const settings = testSettings({ passwordFailures: 1_000_000, ipFailures: 1_000_000 });
  /** The real core on the worker pool; a cache TTL of 0 makes every login cold. */
  const core = (verifiedCacheTtlMs: number) =>
    createCore({
      store,
      limiter: new MemoryLimiter(clock),
      cache: new MemoryCredentialCache(clock),
      hasher: pool,
      clock,
      keys: { current: 'k1', keys: new Map([['k1', randomBytes(32)]]), hmac: randomBytes(32) },
      settings: { ...settings, auth: { ...settings.auth, verifiedCacheTtlMs } },
    });
  const cold = await core(0);
  const users = Array.from({ length: CORES * 4 }, (_, i) => `bench${i}`);
  for (const u of users) await cold.accounts.createUser({ name: 'bench' }, { username: u, password: PASSWORD });
  const login = (core: typeof cold) => (w: number) =>
    core.auth.authenticate({ username: users[w % users.length]!, secret: PASSWORD, scope: 'imap', ip: '192.0.2.1', protocol: 'imap' }).then((r) => {
      if (!r.ok) throw new Error(`bench login failed: ${r.reason}`);
    });
  const loop = monitorEventLoopDelay({ resolution: 1 });
  loop.enable();
  const coldRate = await rate(users.length, SECONDS, login(cold));
  loop.disable();

  const warm = await core(settings.auth.verifiedCacheTtlMs);
  await Promise.all(users.map((_, w) => login(warm)(w)));
  const warmRate = await rate(users.length, Math.min(SECONDS, 3), login(warm));
  await pool.close();
  await store.close();
  return {
    bcrypt_cost: 12,
    cores: CORES,
    raw_verifies_per_s: raw,
    bcryptjs_single_thread_per_s: jsOne,
    native_single_thread_per_s: nativeOne,
    cold_logins_per_s: coldRate,
    cold_vs_raw: coldRate / raw,
    event_loop_p50_ms: loop.percentile(50) / 1e6,
    event_loop_p99_ms: loop.percentile(99) / 1e6,
    event_loop_max_ms: loop.max / 1e6,
    warm_core_logins_per_s: warmRate,
  };
}

async function imapLoginLogout(port: number, user: string, pass: string): Promise<void> {
  const c = await RawClient.open(port);
  try {
    await c.until(/^\* OK/);
    c.write(`a LOGIN "${user}" "${pass}"\r\n`);
    const r = await c.until(/^a /);
    if (!/^a OK/m.test(r)) throw new Error(`login failed: ${r}`);
    c.write('b LOGOUT\r\n');
    await c.until(/^b /);
  } finally {
    c.close();
  }
}

/**
 * Milliseconds from sending LOGIN to its tagged OK, one login at a time on fresh connections
 * (the greeting already read): what a person waits when a mail app connects. p50 and p99.
 */
async function loginLatency(port: number, user: string, pass: string, n: number): Promise<{ p50: number; p99: number }> {
  const ms: number[] = [];
  for (let i = 0; i < n; i++) {
    const c = await RawClient.open(port);
    try {
      await c.until(/^\* OK/);
      const t0 = process.hrtime.bigint();
      c.write(`a LOGIN "${user}" "${pass}"\r\n`);
      const r = await c.until(/^a /);
      ms.push(Number(process.hrtime.bigint() - t0) / 1e6);
      if (!/^a OK/m.test(r)) throw new Error(`login failed: ${r}`);
      c.write('b LOGOUT\r\n');
      await c.until(/^b /);
    } finally {
      c.close();
    }
  }
  ms.sort((a, b) => a - b);
  return { p50: ms[Math.floor(n / 2)]!, p99: ms[Math.min(n - 1, Math.floor(n * 0.99))]! };
}

/** Bytes of FETCH BODY[] of message 1 and the seconds it took, from the FETCH on. */
async function fetchBytes(port: number, user: string, pass: string, tls = false): Promise<{ bytes: number; seconds: number }> {
  let bytes = 0;
  let started = 0n;
  // Timed from the FETCH on: logging in is measured by the login figures.
  await fetchFirstMessage(
    { port, tls, user, pass },
    (d) => (bytes += d.length),
    () => (started = process.hrtime.bigint()),
  );
  return { bytes, seconds: Number(process.hrtime.bigint() - started) / 1e9 };
}

/** Clock ticks the whole machine has been busy (not idle, not waiting for the disk), and in all. */
function machineTicks(): { busy: number; total: number } {
  const t = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = t.reduce((a, b) => a + b, 0);
  return { busy: total - t[3]! - t[4]!, total };
}

/**
 * Logins/s with 16 clients, how busy the machine's cores were meanwhile (1 = every core), and
 * the CPU ms per login of the relay's processes: client, Dovecot and relay share the cores, so
 * a relay's ratio to direct is bounded by what its own CPU adds to every login.
 */
async function loginRate(port: number, user: string, pass: string, relayPids: number[]) {
  const m0 = machineTicks();
  const c0 = relayPids.map(cpuSeconds);
  const t0 = process.hrtime.bigint();
  const perS = await rate(16, SECONDS, () => imapLoginLogout(port, user, pass));
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const m1 = machineTicks();
  const cpu = relayPids.reduce((sum, pid, i) => sum + cpuSeconds(pid) - c0[i]!, 0);
  return { perS, machineBusy: (m1.busy - m0.busy) / (m1.total - m0.total), cpuMsPerLogin: (cpu * 1000) / (perS * seconds) };
}

/** User+system CPU seconds a process has used so far (from /proc, in clock ticks of 10 ms). */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

function rssKb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : 0;
}

/** One certificate for every TLS listener of the run (postern, nginx, socat): the same key and handshake for all. */
function makeCertificate(): { cert: string; key: string; pem: string } {
  const dir = mkdtempSync(join(tmpdir(), 'postern-bench-tls-'));
  const [cert, key, pem] = ['cert.pem', 'key.pem', 'both.pem'].map((f) => join(dir, f)) as [string, string, string];
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-days',
      '2',
      '-subj',
      '/CN=bench.postern.test',
      '-keyout',
      key,
      '-out',
      cert,
    ],
    {
      stdio: 'ignore',
    },
  );
  writeFileSync(pem, readFileSync(cert, 'utf8') + readFileSync(key, 'utf8'));
  return { cert, key, pem };
}

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CERT = makeCertificate();

/**
 * postern as its own process, started the way it ships (bin/postern, with its node flags),
 * so that its RSS and its CPU are its own.
 */
async function startPosternProcess(dovecot: Dovecot, extra: Record<string, string> = {}) {
  const port = await freePort();
  const tlsPort = await freePort();
  const env = {
    ...process.env,
    POSTERN_SERVER__DATA_DIR: mkdtempSync(join(tmpdir(), 'postern-bench-')),
    POSTERN_LOG__LEVEL: 'warn',
    POSTERN_IMAP__PORT: String(port),
    POSTERN_IMAP__TLS_PORT: String(tlsPort),
    POSTERN_TLS__CERT: CERT.cert,
    POSTERN_TLS__KEY: CERT.key,
    POSTERN_IMAP__MAX_SESSIONS_PER_USER: String(IDLE + 100),
    POSTERN_POP3__ENABLED: 'false',
    POSTERN_SUBMISSION__ENABLED: 'false',
    POSTERN_LMTP__ENABLED: 'false',
    // No web API: a process that is draining after SIGTERM still holds its port.
    POSTERN_API__ENABLED: 'false',
    POSTERN_FRONTEND__MAX_PREAUTH_PER_IP: '1000',
    POSTERN_LIMITS__IP_FAILURES: '1000000',
    POSTERN_UPSTREAM__IMAP_PORT: String(dovecot.imapPort),
    POSTERN_UPSTREAM__MASTER_USER: dovecot.masterUser,
    POSTERN_UPSTREAM__MASTER_PASSWORD: dovecot.masterPassword,
    ...extra,
  };
  const cli = (args: string[], input = '') => execFileSync(join(ROOT, 'bin/postern'), args, { input, env, encoding: 'utf8' });
  cli(['user', 'add', 'alice'], `${PASSWORD}\n`);
  const asp = /password: ([a-z ]+)/.exec(cli(['asp', 'create', 'alice', '--scope', 'imap']))![1]!.trim();
  dovecot.addUser('alice', 'upstream-pass');
  // pia's stored mail is PGP-encrypted: her sessions are read after login (APPEND sealing).
  const { publicKey } = await openpgp.generateKey({ type: 'ecc', curve: 'curve25519Legacy', userIDs: [{ email: 'pia@example.test' }], format: 'armored' });
  cli(['user', 'add', 'pia'], `${PASSWORD}\n`);
  cli(['pgp', 'set', 'pia', '-'], publicKey);
  const piaAsp = /password: ([a-z ]+)/.exec(cli(['asp', 'create', 'pia', '--scope', 'imap']))![1]!.trim();
  dovecot.addUser('pia', 'upstream-pass');
  // bin/postern execs node, so the child's pid is postern's own. POSTERN_BENCH_NODE_FLAGS adds
  // node options, to compare settings. The inspector (on loopback) is how the memory figures
  // ask for a full garbage collection before reading RSS.
  const inspect = await freePort();
  const nodeOptions = [process.env.POSTERN_BENCH_NODE_FLAGS, `--inspect=127.0.0.1:${inspect}`].filter(Boolean).join(' ');
  const child: ChildProcess = spawn(join(ROOT, 'bin/postern'), ['serve'], {
    env: { ...env, NODE_OPTIONS: nodeOptions },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  await waitFor('postern process', () => imapLoginLogout(port, 'alice', asp), 30_000).catch((err: Error) => {
    child.kill('SIGKILL');
    throw new Error(`${err.message}\n${stderr}`);
  });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  return {
    port,
    tlsPort,
    asp,
    piaAsp,
    pid: child.pid!,
    inspect,
    stop: async () => {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/**
 * nginx's mail proxy (Debian's module) asking a postern process's auth_http endpoint, the
 * way sites run it: nginx carries the session, postern only decides. The peer baseline for
 * postern's own relay.
 */
async function startNginxBaseline(dovecot: Dovecot) {
  const apiPort = await freePort();
  const decider = await startPosternProcess(dovecot, {
    POSTERN_API__ENABLED: 'true',
    POSTERN_API__PORT: String(apiPort),
    POSTERN_NGINX__ENABLED: 'true',
    POSTERN_UPSTREAM__LOGIN: 'separator',
  });
  const dir = mkdtempSync(join(tmpdir(), 'postern-bench-nginx-'));
  const port = await freePort();
  const tlsPort = await freePort();
  writeFileSync(
    join(dir, 'nginx.conf'),
    [
      'load_module /usr/lib/nginx/modules/ngx_mail_module.so;',
      `pid ${dir}/nginx.pid;`,
      `error_log ${dir}/error.log warn;`,
      'daemon off;',
      'worker_processes 1;',
      `worker_rlimit_nofile ${IDLE * 2 + 400};`,
      `events { worker_connections ${IDLE * 2 + 200}; }`,
      'mail {',
      '  server_name bench.postern.test;',
      `  auth_http 127.0.0.1:${apiPort}/auth/nginx;`,
      `  ssl_certificate ${CERT.cert};`,
      `  ssl_certificate_key ${CERT.key};`,
      `  server { listen 127.0.0.1:${port}; protocol imap; }`,
      `  server { listen 127.0.0.1:${tlsPort} ssl; protocol imap; }`,
      '}',
      '',
    ].join('\n'),
  );
  const proc = spawn('nginx', ['-p', dir, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log')], { stdio: 'ignore' });
  await waitFor('nginx', () => imapLoginLogout(port, 'alice', decider.asp), 30_000);
  // The worker carries the sessions: its memory is the figure, not the master's.
  const worker = Number(
    execFileSync('pgrep', ['-P', String(proc.pid)], { encoding: 'utf8' })
      .trim()
      .split('\n')[0],
  );
  return {
    port,
    tlsPort,
    asp: decider.asp,
    pid: worker,
    deciderPid: decider.pid,
    stop: async () => {
      proc.kill('SIGTERM');
      await decider.stop();
    },
  };
}

/** Seconds per APPEND of `message`, over one session, best of `n`. */
async function appendSeconds(port: number, user: string, pass: string, message: Buffer, n: number): Promise<number> {
  const c = new ImapFlow({ host: '127.0.0.1', port, secure: false, doSTARTTLS: false, auth: { user, pass }, logger: false });
  await c.connect();
  try {
    let best = Infinity;
    for (let i = 0; i < n; i++) {
      const t0 = process.hrtime.bigint();
      await c.append('Drafts', message);
      best = Math.min(best, Number(process.hrtime.bigint() - t0) / 1e9);
    }
    return best;
  } finally {
    await c.logout();
  }
}

async function e2eFigures(
  dovecot: Dovecot,
  postern: { port: number; tlsPort: number; asp: string; piaAsp: string; pid: number },
  nginx: { port: number; tlsPort: number; asp: string; pid: number; deciderPid: number },
) {
  log('end-to-end logins and FETCH throughput...');
  const direct = await loginRate(dovecot.imapPort, 'alice', 'upstream-pass', []);
  const viaPostern = await loginRate(postern.port, 'alice', postern.asp, [postern.pid]);
  const viaNginx = await loginRate(nginx.port, 'alice', nginx.asp, [nginx.pid, nginx.deciderPid]);
  const latDirect = await loginLatency(dovecot.imapPort, 'alice', 'upstream-pass', 200);
  const latPostern = await loginLatency(postern.port, 'alice', postern.asp, 200);
  const latNginx = await loginLatency(nginx.port, 'alice', nginx.asp, 200);

  const line = `${'y'.repeat(998)}\r\n`;
  const message = Buffer.from(`Subject: big\r\n\r\n${line.repeat(128 * 1024)}`);
  for (const user of ['alice', 'pia']) {
    const c = new ImapFlow({ host: '127.0.0.1', port: dovecot.imapPort, secure: false, auth: { user, pass: 'upstream-pass' }, logger: false });
    await c.connect();
    await c.append('INBOX', message);
    await c.mailboxCreate('Drafts');
    await c.logout();
  }
  // Alternate direct and proxied runs so both see the same machine noise; keep the best of each.
  let fetchDirect = 0;
  let fetchPostern = 0;
  let fetchSocat = 0;
  let fetchNginx = 0;
  let fetchInspected = 0;
  let relayed = 0;
  let relayCpu = 0;
  // A minimal relay in C (socat) in the same place as postern: what any proxy costs here.
  const socatPort = await freePort();
  const socat = spawn('socat', [`TCP-LISTEN:${socatPort},bind=127.0.0.1,fork,reuseaddr`, `TCP:127.0.0.1:${dovecot.imapPort}`], { stdio: 'ignore' });
  await waitFor('socat', () => imapLoginLogout(socatPort, 'alice', 'upstream-pass'));
  // The same over TLS: each relay ends the client's TLS and speaks plain IMAP to Dovecot.
  const socatTlsPort = await freePort();
  const socatTls = spawn(
    'socat',
    [`OPENSSL-LISTEN:${socatTlsPort},bind=127.0.0.1,fork,reuseaddr,cert=${CERT.pem},verify=0`, `TCP:127.0.0.1:${dovecot.imapPort}`],
    { stdio: 'ignore' },
  );
  await waitFor('socat (TLS)', () => fetchBytes(socatTlsPort, 'alice', 'upstream-pass', true).then(() => undefined));
  let tlsSocat = 0;
  let tlsNginx = 0;
  let tlsPostern = 0;
  for (let i = 0; i < 5; i++) {
    const best = async (port: number, user: string, pass: string, tls: boolean, was: number) => {
      const r = await fetchBytes(port, user, pass, tls);
      return Math.max(was, r.bytes / 1e6 / r.seconds);
    };
    tlsSocat = await best(socatTlsPort, 'alice', 'upstream-pass', true, tlsSocat);
    tlsNginx = await best(nginx.tlsPort, 'alice', nginx.asp, true, tlsNginx);
    tlsPostern = await best(postern.tlsPort, 'alice', postern.asp, true, tlsPostern);
  }
  socatTls.kill();
  for (let i = 0; i < 5; i++) {
    const d = await fetchBytes(dovecot.imapPort, 'alice', 'upstream-pass');
    fetchDirect = Math.max(fetchDirect, d.bytes / 1e6 / d.seconds);
    const x = await fetchBytes(socatPort, 'alice', 'upstream-pass');
    fetchSocat = Math.max(fetchSocat, x.bytes / 1e6 / x.seconds);
    const n = await fetchBytes(nginx.port, 'alice', nginx.asp);
    fetchNginx = Math.max(fetchNginx, n.bytes / 1e6 / n.seconds);
    const cpu0 = cpuSeconds(postern.pid);
    const p = await fetchBytes(postern.port, 'alice', postern.asp);
    relayCpu += cpuSeconds(postern.pid) - cpu0;
    relayed += p.bytes;
    fetchPostern = Math.max(fetchPostern, p.bytes / 1e6 / p.seconds);
    const q = await fetchBytes(postern.port, 'pia', postern.piaAsp);
    fetchInspected = Math.max(fetchInspected, q.bytes / 1e6 / q.seconds);
  }
  socat.kill();
  // An uploaded 1 MB draft: stored as it is (direct), and sealed with PGP on its way through postern.
  const draft = Buffer.from(`Subject: draft\r\nContent-Type: text/plain\r\n\r\n${line.repeat(1024)}`);
  const appendDirect = await appendSeconds(dovecot.imapPort, 'pia', 'upstream-pass', draft, 10);
  const appendSealed = await appendSeconds(postern.port, 'pia', postern.piaAsp, draft, 10);
  return {
    direct_dovecot_logins_per_s: direct.perS,
    postern_warm_logins_per_s: viaPostern.perS,
    warm_e2e_vs_direct: viaPostern.perS / direct.perS,
    nginx_logins_per_s: viaNginx.perS,
    nginx_vs_direct: viaNginx.perS / direct.perS,
    machine_busy_direct: direct.machineBusy,
    machine_busy_postern: viaPostern.machineBusy,
    machine_busy_nginx: viaNginx.machineBusy,
    postern_cpu_ms_per_login: viaPostern.cpuMsPerLogin,
    nginx_cpu_ms_per_login: viaNginx.cpuMsPerLogin,
    login_latency_nginx_p50_ms: latNginx.p50,
    login_latency_nginx_p99_ms: latNginx.p99,
    login_latency_direct_p50_ms: latDirect.p50,
    login_latency_direct_p99_ms: latDirect.p99,
    login_latency_postern_p50_ms: latPostern.p50,
    login_latency_postern_p99_ms: latPostern.p99,
    fetch_message_mb: message.length / 1e6,
    fetch_direct_mb_per_s: fetchDirect,
    fetch_postern_mb_per_s: fetchPostern,
    fetch_vs_direct: fetchPostern / fetchDirect,
    fetch_socat_mb_per_s: fetchSocat,
    fetch_vs_socat: fetchPostern / fetchSocat,
    fetch_nginx_mb_per_s: fetchNginx,
    fetch_vs_nginx: fetchPostern / fetchNginx,
    fetch_tls_socat_mb_per_s: tlsSocat,
    fetch_tls_nginx_mb_per_s: tlsNginx,
    fetch_tls_postern_mb_per_s: tlsPostern,
    fetch_tls_vs_nginx: tlsPostern / tlsNginx,
    fetch_tls_vs_socat: tlsPostern / tlsSocat,
    fetch_inspected_mb_per_s: fetchInspected,
    fetch_inspected_vs_direct: fetchInspected / fetchDirect,
    append_mb: draft.length / 1e6,
    append_direct_ms: appendDirect * 1000,
    append_sealed_ms: appendSealed * 1000,
    // postern's own CPU per GB relayed (login included): its cost, whatever the others cost.
    relay_cpu_s_per_gb: relayCpu / (relayed / 1e9),
  };
}

/**
 * RSS per idle IMAP session of one relay process: sessions logged in and waiting in IDLE, the
 * growth from a quarter of them to all of them, each point taken once the process settled.
 * Measured from a quarter on, the figure is the steady cost of one more session, not the
 * process warming up (heap, caches, the young generation growing).
 */
async function idleFigure(label: string, target: { port: number; pid: number; inspect?: number }, tls: boolean, user: string, pass: string): Promise<number> {
  log(`memory of ${IDLE} idle IMAP sessions: ${label}...`);
  const clients: RawClient[] = [];
  const open = async () => {
    const c = await RawClient.open(target.port, tls);
    clients.push(c);
    await c.until(/^\* OK/);
    c.write(`a LOGIN ${user} "${pass}"\r\n`);
    await c.until(/^a OK/);
    c.write('b SELECT INBOX\r\nc IDLE\r\n');
    await c.until(/^\+ idling/);
  };
  const openMany = async (n: number) => {
    for (let i = 0; i < n; i += 50) await Promise.all(Array.from({ length: Math.min(50, n - i) }, open));
  };
  // RSS once the process has settled. A Node.js process is first asked for a full garbage
  // collection: V8 gives back a burst's memory only when its memory reducer runs, which came
  // anywhere from 20 s to more than 60 s after the last login, and read at a fixed time
  // postern's figure moved by 4–8 KB per session from run to run. nginx has no collector.
  const settled = async () => {
    await new Promise((r) => setTimeout(r, SETTLE_MS));
    if (target.inspect) {
      await collectGarbage(target.inspect);
      await new Promise((r) => setTimeout(r, 2000));
    }
    return rssKb(target.pid);
  };
  try {
    const first = Math.floor(IDLE / 4);
    await openMany(first);
    const before = await settled();
    log(`  ${first} sessions: ${(before / 1024).toFixed(1)} MB`);
    await openMany(IDLE - first);
    const after = await settled();
    log(`  ${IDLE} sessions: ${(after / 1024).toFixed(1)} MB`);
    return (after - before) / (IDLE - first);
  } finally {
    for (const c of clients) c.close();
    await new Promise((r) => setTimeout(r, 1000));
  }
}

/** A full garbage collection in the Node.js process whose inspector listens on `port` (DevTools protocol). */
async function collectGarbage(port: number): Promise<void> {
  const [target] = (await (await fetch(`http://127.0.0.1:${port}/json/list`)).json()) as Array<{ webSocketDebuggerUrl: string }>;
  // The global WebSocket of node 20 (scripts/bench.mjs runs this with --experimental-websocket).
  type Socketish = { onopen: unknown; onerror: unknown; onmessage: unknown; send(s: string): void; close(): void };
  const ws = new (globalThis as unknown as { WebSocket: new (url: string) => Socketish }).WebSocket(target!.webSocketDebuggerUrl);
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = reject;
  });
  await new Promise<void>((resolve) => {
    ws.onmessage = (m: { data: unknown }) => JSON.parse(String(m.data)).id === 1 && resolve();
    ws.send(JSON.stringify({ id: 1, method: 'HeapProfiler.collectGarbage' }));
  });
  ws.close();
}

/** The idle figure of test/bench/node-floor.mjs: what any Node.js server holds per connection. */
async function nodeFloorFigure(tls: boolean): Promise<number> {
  const port = await freePort();
  const inspect = await freePort();
  // The node flags postern ships with (bin/postern).
  const args = ['--max-semi-space-size=2', `--inspect=127.0.0.1:${inspect}`, join(ROOT, 'test/bench/node-floor.mjs'), String(port)];
  // Its stderr is left out: the inspector announces itself there.
  const proc = spawn(process.execPath, [...args, ...(tls ? [CERT.cert, CERT.key] : [])], { stdio: ['ignore', 'pipe', 'ignore'] });
  try {
    await new Promise((resolve, reject) => {
      proc.stdout!.once('data', resolve);
      proc.once('exit', (code) => reject(new Error(`node-floor.mjs exited with ${code}`)));
    });
    return await idleFigure(tls ? 'a bare Node.js TLS server' : 'a bare Node.js server', { port, pid: proc.pid!, inspect }, tls, 'alice', 'x');
  } finally {
    proc.kill();
  }
}

async function main() {
  const hashing = MEMORY_ONLY ? {} : await hashingFigures();
  const dovecot = await startDovecot({ highPerformanceLogin: true });
  let postern: Awaited<ReturnType<typeof startPosternProcess>> | null = null;
  try {
    postern = await startPosternProcess(dovecot);
    const nginx = await startNginxBaseline(dovecot);
    const e2e = MEMORY_ONLY ? {} : await e2eFigures(dovecot, postern, nginx);
    const nginxPlain = await idleFigure('nginx', nginx, false, 'alice', nginx.asp);
    const nginxTls = await idleFigure('nginx, TLS', { port: nginx.tlsPort, pid: nginx.pid }, true, 'alice', nginx.asp);
    await nginx.stop();
    const floorPlain = await nodeFloorFigure(false);
    const floorTls = await nodeFloorFigure(true);
    // A fresh process for each memory figure: garbage from the phases before would be
    // collected in the middle of it and hide the cost of the sessions.
    const posternIdle: number[] = [];
    for (const tls of [false, true]) {
      await postern.stop();
      postern = await startPosternProcess(dovecot);
      posternIdle.push(
        await idleFigure(
          tls ? 'postern, TLS' : 'postern',
          { port: tls ? postern.tlsPort : postern.port, pid: postern.pid, inspect: postern.inspect },
          tls,
          'alice',
          postern.asp,
        ),
      );
    }
    const idle = {
      idle_sessions: IDLE,
      rss_kb_per_idle_session: posternIdle[0]!,
      rss_kb_per_idle_session_tls: posternIdle[1]!,
      nginx_rss_kb_per_idle_session: nginxPlain,
      nginx_rss_kb_per_idle_session_tls: nginxTls,
      node_floor_rss_kb_per_idle_connection: floorPlain,
      node_floor_rss_kb_per_idle_connection_tls: floorTls,
    };
    const result = { date: new Date().toISOString(), node: process.version, ...hashing, ...e2e, ...idle };
    if (JSON_ONLY || MEMORY_ONLY) console.log(JSON.stringify(result, null, 2));
    else printTable(result);
  } finally {
    await postern?.stop();
    await dovecot.stop();
  }
}

function printTable(r: Record<string, string | number>) {
  const f = (v: string | number) => (typeof v === 'number' ? (Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(2)) : v);
  const pct = (v: string | number) => `${Math.round(Number(v) * 100)}%`;
  const rows: Array<[string, string, string]> = [
    ['bcrypt cost 12, raw verifies/s on all cores (ceiling)', f(r.raw_verifies_per_s!), `${r.cores} cores`],
    [
      '  one thread: native bcrypt vs bcryptjs verifies/s',
      `${f(r.native_single_thread_per_s!)} vs ${f(r.bcryptjs_single_thread_per_s!)}`,
      `${f(Number(r.native_single_thread_per_s) / Number(r.bcryptjs_single_thread_per_s))}x`,
    ],
    ['cold logins/s through the core', f(r.cold_logins_per_s!), `${f(r.cold_vs_raw!)} x ceiling`],
    ['event-loop delay during cold storm p50 / p99 / max ms', `${f(r.event_loop_p50_ms!)} / ${f(r.event_loop_p99_ms!)} / ${f(r.event_loop_max_ms!)}`, ''],
    [
      'warm (cached) logins/s through the core',
      f(r.warm_core_logins_per_s!),
      `${f(Number(r.warm_core_logins_per_s) / Number(r.raw_verifies_per_s))} x ceiling`,
    ],
    ['IMAP connect+login+logout/s, 16 clients: Dovecot direct', f(r.direct_dovecot_logins_per_s!), 'baseline'],
    ['IMAP connect+login+logout/s: through postern (warm)', f(r.postern_warm_logins_per_s!), `${f(r.warm_e2e_vs_direct!)} x direct`],
    ['IMAP connect+login+logout/s: nginx mail proxy, postern deciding', f(r.nginx_logins_per_s!), `${f(r.nginx_vs_direct!)} x direct`],
    [
      '  machine busy during those runs: direct / postern / nginx',
      `${pct(r.machine_busy_direct!)} / ${pct(r.machine_busy_postern!)} / ${pct(r.machine_busy_nginx!)}`,
      'of all cores',
    ],
    [
      '  relay CPU ms per login: postern / nginx + its decider',
      `${f(r.postern_cpu_ms_per_login!)} / ${f(r.nginx_cpu_ms_per_login!)}`,
      'on the same cores as Dovecot',
    ],
    ['LOGIN latency p50 / p99 ms, one at a time: Dovecot direct', `${f(r.login_latency_direct_p50_ms!)} / ${f(r.login_latency_direct_p99_ms!)}`, 'baseline'],
    [
      'LOGIN latency p50 / p99 ms: through postern (warm)',
      `${f(r.login_latency_postern_p50_ms!)} / ${f(r.login_latency_postern_p99_ms!)}`,
      `direct + ${f(Number(r.login_latency_postern_p50_ms) - Number(r.login_latency_direct_p50_ms))} ms at p50`,
    ],
    [
      'LOGIN latency p50 / p99 ms: nginx mail proxy, postern deciding',
      `${f(r.login_latency_nginx_p50_ms!)} / ${f(r.login_latency_nginx_p99_ms!)}`,
      `direct + ${f(Number(r.login_latency_nginx_p50_ms) - Number(r.login_latency_direct_p50_ms))} ms at p50`,
    ],
    [`FETCH ${f(r.fetch_message_mb!)} MB: Dovecot direct MB/s`, f(r.fetch_direct_mb_per_s!), 'baseline'],
    [
      'FETCH through socat (minimal C relay) MB/s',
      f(r.fetch_socat_mb_per_s!),
      `${f(Number(r.fetch_socat_mb_per_s) / Number(r.fetch_direct_mb_per_s))} x direct`,
    ],
    ['FETCH through nginx mail proxy MB/s', f(r.fetch_nginx_mb_per_s!), `${f(Number(r.fetch_nginx_mb_per_s) / Number(r.fetch_direct_mb_per_s))} x direct`],
    [
      'FETCH through postern MB/s',
      f(r.fetch_postern_mb_per_s!),
      `${f(r.fetch_vs_direct!)} x direct, ${f(r.fetch_vs_socat!)} x socat, ${f(r.fetch_vs_nginx!)} x nginx`,
    ],
    ['  postern CPU seconds per GB relayed', f(r.relay_cpu_s_per_gb!), `${f(1 / Number(r.relay_cpu_s_per_gb))} GB/s per core`],
    ['FETCH over TLS: socat / nginx MB/s', `${f(r.fetch_tls_socat_mb_per_s!)} / ${f(r.fetch_tls_nginx_mb_per_s!)}`, 'baselines'],
    ['FETCH over TLS through postern MB/s', f(r.fetch_tls_postern_mb_per_s!), `${f(r.fetch_tls_vs_nginx!)} x nginx, ${f(r.fetch_tls_vs_socat!)} x socat`],
    ['FETCH through postern, PGP user (session read) MB/s', f(r.fetch_inspected_mb_per_s!), `${f(r.fetch_inspected_vs_direct!)} x direct`],
    [`APPEND ${f(r.append_mb!)} MB: Dovecot direct ms`, f(r.append_direct_ms!), 'baseline'],
    ['APPEND through postern, sealed with PGP, ms', f(r.append_sealed_ms!), `${f(Number(r.append_sealed_ms) / Number(r.append_direct_ms))} x direct`],
    [`RSS per idle IMAP session (${r.idle_sessions} in IDLE): nginx`, `${f(r.nginx_rss_kb_per_idle_session!)} KB`, 'baseline'],
    ['  through postern', `${f(r.rss_kb_per_idle_session!)} KB`, `${f(Number(r.rss_kb_per_idle_session) / Number(r.nginx_rss_kb_per_idle_session))} x nginx`],
    ['  a bare Node.js server, per connection (the floor)', `${f(r.node_floor_rss_kb_per_idle_connection!)} KB`, 'one socket, no session'],
    ['RSS per idle IMAP session over TLS: nginx', `${f(r.nginx_rss_kb_per_idle_session_tls!)} KB`, 'baseline'],
    [
      '  through postern',
      `${f(r.rss_kb_per_idle_session_tls!)} KB`,
      `${f(Number(r.rss_kb_per_idle_session_tls) / Number(r.nginx_rss_kb_per_idle_session_tls))} x nginx`,
    ],
    [
      '  a bare Node.js TLS server, per connection (the floor)',
      `${f(r.node_floor_rss_kb_per_idle_connection_tls!)} KB`,
      `${f(Number(r.node_floor_rss_kb_per_idle_connection_tls) / Number(r.nginx_rss_kb_per_idle_session_tls))} x nginx`,
    ],
  ];
  const w = Math.max(...rows.map((x) => x[0].length));
  const w2 = Math.max(...rows.map((x) => x[1].length));
  console.log(rows.map(([a, b, c]) => `${a.padEnd(w)}  ${b.padStart(w2)}  ${c}`).join('\n'));
  console.log(JSON.stringify(r));
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
