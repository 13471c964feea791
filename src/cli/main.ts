import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, Option } from 'commander';
import { createApp, type App } from '../app.js';
import { dataPath, loadConfig } from '../config/load.js';
import { optionalLifetime } from '../core/duration.js';
import { parseAspScopes } from '../core/asp.js';
import { PosternError, invalid } from '../core/errors.js';
import { normalizeUsername, validUsername } from '../core/username.js';
import { checkImportedHash } from '../core/accounts.js';
import { parseAuditFilter } from '../core/audit-filter.js';
import { CLI_CREATOR } from '../core/web-sessions.js';
import { ROLES, type Role } from '../core/types.js';
import { iso, readAll, readSecret, table } from './io.js';
import { serve } from './serve.js';

const actor = { name: 'cli', protocol: 'cli' as const };

function packageVersion(): string {
  const pkg = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'package.json');
  return (JSON.parse(readFileSync(pkg, 'utf8')) as { version: string }).version;
}

/**
 * Runs a command on the configured store. Only the commands that make accounts may start a
 * new embedded database: any other one, run from the wrong directory or with the wrong
 * configuration, says where it looked instead of quietly working on an empty one.
 */
async function withApp<T>(cmd: Command, fn: (app: App) => Promise<T>, opts: { mayCreate?: boolean } = {}): Promise<T> {
  const { config: file } = cmd.optsWithGlobals<{ config?: string }>();
  const config = loadConfig({ file });
  const db = dataPath(config, config.store.path);
  if (config.store.kind === 'embedded' && !opts.mayCreate && !existsSync(db)) {
    throw new PosternError(
      'not_found',
      `no postern database at ${db}: set server.data_dir (or POSTERN_SERVER__DATA_DIR, --config) to where postern keeps its data`,
    );
  }
  // The CLI prints results itself; only warnings from the core go to the log.
  config.log.level = process.env.POSTERN_LOG__LEVEL ? config.log.level : 'warn';
  const app = await createApp(config);
  try {
    return await fn(app);
  } finally {
    await app.close();
  }
}

async function newPassword(): Promise<string> {
  const password = await readSecret('New password: ');
  if (process.stdin.isTTY && (await readSecret('Repeat password: ')) !== password) throw invalid('passwords do not match');
  return password;
}

export function buildCli(): Command {
  const program = new Command('postern')
    .description('postern: mail authentication gateway')
    .version(packageVersion(), '-V, --version', 'print the version')
    .option('-c, --config <file>', 'configuration file overriding config/default.toml')
    .showHelpAfterError();

  program
    .command('serve')
    .description('run postern on the configured listeners')
    .action((_o, cmd: Command) => {
      const file = cmd.optsWithGlobals<{ config?: string }>().config;
      return serve(loadConfig({ file }), () => loadConfig({ file }));
    });

  const user = program.command('user').description('manage accounts');
  user
    .command('add <name>')
    .description('create an account (password read from stdin or prompted)')
    .addOption(new Option('--role <role>', 'role').choices(ROLES as string[]).default('user'))
    .option('--email <address>', 'where notifications go')
    .option('--temporary', 'the password must be changed at first sign-in and works only for the account page')
    .option('--hash <hash>', 'keep an existing password hash from another system instead of asking for a password')
    .action((name: string, o: { role: Role; email?: string; temporary?: boolean; hash?: string }, cmd: Command) =>
      withApp(
        cmd,
        async (app) => {
          const u = o.hash
            ? await app.accounts.importUser(actor, { username: name, passwordHash: o.hash, role: o.role, email: o.email ?? null })
            : await app.accounts.createUser(actor, {
                username: name,
                password: await newPassword(),
                role: o.role,
                email: o.email ?? null,
                temporary: o.temporary,
              });
          console.log(`created ${u.username} (${u.role}) id ${u.id}`);
        },
        { mayCreate: true },
      ),
    );
  user
    .command('import <file>')
    .description('import users with their password hashes from a Dovecot passwd-file (name:{SCHEME}hash[:...]); - reads stdin')
    .option('--dry-run', 'check every line and say what would be imported, changing nothing')
    .action((file: string, o: { dryRun?: boolean }, cmd: Command) =>
      withApp(
        cmd,
        async (app) => {
          let text: string;
          try {
            text = file === '-' ? await readAll() : readFileSync(file, 'utf8');
          } catch (err) {
            throw invalid(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
          }
          let imported = 0;
          const problems: string[] = [];
          for (const [i, line] of text.split(/\r?\n/).entries()) {
            if (!line.trim() || line.startsWith('#')) continue;
            const [name = '', hash = ''] = line.split(':');
            try {
              if (o.dryRun) {
                const scheme = checkImportedHash(name, hash);
                const username = validUsername(name);
                if (await app.store.users.findByName(username)) throw invalid(`user "${username}" already exists`);
                console.log(`${username}: ${scheme}`);
              } else {
                await app.accounts.importUser(actor, { username: name, passwordHash: hash });
              }
              imported++;
            } catch (err) {
              if (!(err instanceof PosternError) || err.temporary) throw err;
              problems.push(`line ${i + 1}: ${err.message}`);
            }
          }
          console.log(o.dryRun ? `would import ${imported} user(s); nothing changed` : `imported ${imported} user(s)`);
          for (const p of problems) console.error(p);
          if (problems.length) throw invalid(`${problems.length} line(s) not imported`);
        },
        { mayCreate: true },
      ),
    );
  user
    .command('passwd <name>')
    .description("set an account's password (read from stdin or prompted)")
    .option('--temporary', 'works only for the account page until changed; expires')
    .action((name: string, o: { temporary?: boolean }, cmd: Command) =>
      withApp(cmd, async (app) => {
        await app.accounts.setPassword(actor, name, await newPassword(), { temporary: o.temporary });
        console.log(`password of ${name} changed`);
      }),
    );
  user
    .command('show <name>')
    .description('show an account')
    .option('--json', 'print JSON')
    .action((name: string, o: { json?: boolean }, cmd: Command) =>
      withApp(cmd, async (app) => {
        const u = await app.accounts.get(name);
        const asps = await app.store.asps.countByUser(u.id);
        const codes = await app.store.recoveryCodes.countUnused(u.id);
        const view = {
          id: u.id,
          username: u.username,
          role: u.role,
          status: u.status,
          email: u.email,
          scopes: u.scopes,
          twoFactor: u.twoFactor,
          totp: u.totp ? `enabled ${iso(u.totp.enabledAt)}` : 'off',
          securityKeys: (await app.store.securityKeys.listByUser(u.id)).length,
          recoveryCodesLeft: codes,
          pgp: u.pgp ? `${u.pgp.fingerprint}${u.pgp.encrypt ? ' (stored mail encrypted)' : ''}` : 'none',
          asps,
          mustChangePassword: u.mustChangePassword,
          passwordChanged: iso(u.passwordChangedAt),
          created: iso(u.createdAt),
        };
        if (o.json) return console.log(JSON.stringify(view, null, 2));
        for (const [k, v] of Object.entries(view)) console.log(`${k.padEnd(19)} ${Array.isArray(v) ? v.join(',') : String(v)}`);
      }),
    );
  user
    .command('list')
    .description('list accounts')
    .action((_o, cmd: Command) =>
      withApp(cmd, async (app) => {
        const users = await app.store.users.list(1000);
        console.log(
          table(
            ['USERNAME', 'ROLE', 'STATUS', '2FA', 'CREATED'],
            users.map((u) => [u.username, u.role, u.status, u.twoFactor ? 'on' : 'off', iso(u.createdAt)]),
          ),
        );
      }),
    );
  user
    .command('set <name>')
    .description("change an account's role or email address (--email '' removes it)")
    .addOption(new Option('--role <role>', 'role').choices(ROLES as string[]))
    .option('--email <address>', 'where notices and emailed codes go')
    .action((name: string, o: { role?: Role; email?: string }, cmd: Command) =>
      withApp(cmd, async (app) => {
        if (o.role === undefined && o.email === undefined) throw invalid('nothing to change: give --role or --email');
        if (o.role) await app.accounts.setRole(actor, name, o.role);
        if (o.email !== undefined) await app.accounts.setEmail(actor, name, o.email || null);
        const u = await app.accounts.get(name);
        console.log(`${u.username}: role ${u.role}, email ${u.email ?? 'none'}`);
      }),
    );
  user
    .command('delete <name>')
    .description('delete an account and all its credentials (its mailbox on the mail server stays)')
    .action((name: string, _o, cmd: Command) =>
      withApp(cmd, async (app) => {
        await app.accounts.deleteUser(actor, name);
        console.log(`${normalizeUsername(name)} deleted`);
      }),
    );
  for (const [verb, status] of [
    ['disable', 'disabled'],
    ['enable', 'active'],
  ] as const) {
    user
      .command(`${verb} <name>`)
      .description(`${verb} an account`)
      .action((name: string, _o, cmd: Command) =>
        withApp(cmd, async (app) => {
          await app.accounts.setStatus(actor, name, status);
          console.log(`${name} is ${status}`);
        }),
      );
  }

  const asp = program.command('asp').description('application-specific passwords');
  asp
    .command('create <name>')
    .description('create an ASP and print it once')
    .requiredOption('--scope <scopes>', 'imap, pop3, smtp (comma separated) or *')
    .option('--description <text>', 'what it is for', '')
    .option('--expires <duration>', 'lifetime, e.g. 30d')
    .option('--from <networks>', 'addresses or CIDRs it may log in from (comma separated); default: anywhere')
    .action((name: string, o: { scope: string; description: string; expires?: string; from?: string }, cmd: Command) =>
      withApp(cmd, async (app) => {
        const ttl = optionalLifetime(o.expires, '--expires');
        const { asp: a, password } = await app.accounts.createAsp(actor, name, {
          description: o.description,
          scopes: parseAspScopes(o.scope),
          expiresInMs: ttl,
          networks: o.from ? o.from.split(',').filter(Boolean) : [],
        });
        console.log(
          `id:       ${a.id}\nscopes:   ${a.scopes.join(',')}\nexpires:  ${iso(a.expiresAt)}\nfrom:     ${a.networks.join(',') || 'anywhere'}\npassword: ${password}`,
        );
        console.error('The password is shown only now.');
      }),
    );
  asp
    .command('list <name>')
    .description("list a user's ASPs")
    .action((name: string, _o, cmd: Command) =>
      withApp(cmd, async (app) => {
        const asps = await app.accounts.listAsps(name);
        console.log(
          table(
            ['ID', 'SCOPES', 'FROM', 'DESCRIPTION', 'CREATED', 'EXPIRES', 'LAST USE'],
            asps.map((a) => [
              a.id,
              a.scopes.join(','),
              a.networks.join(',') || 'anywhere',
              a.description,
              iso(a.createdAt),
              iso(a.expiresAt),
              a.lastUse ? `${iso(a.lastUse.time)} ${a.lastUse.protocol ?? ''} ${a.lastUse.ip ?? ''}`.trim() : '-',
            ]),
          ),
        );
      }),
    );
  asp
    .command('revoke <name> <id>')
    .description('revoke one ASP')
    .action((name: string, id: string, _o, cmd: Command) =>
      withApp(cmd, async (app) => {
        await app.accounts.revokeAsp(actor, name, id);
        console.log(`revoked ${id}`);
      }),
    );

  program
    .command('2fa')
    .description('second factors')
    .command('reset <name>')
    .description('reset a user who lost their second factor: prints a temporary password and recovery codes to hand over')
    .action((name: string, _o, cmd: Command) =>
      withApp(cmd, async (app) => {
        const { temporaryPassword, recoveryCodes } = await app.accounts.resetSecondFactor(actor, name);
        console.log(`second factors of ${name} reset; every session ended. Hand these over (shown only now):`);
        console.log(`temporary password (account page only, change it first): ${temporaryPassword}`);
        console.log(`recovery codes (the only second factor until a new one is set up):\n${recoveryCodes.join('\n')}`);
      }),
    );

  const pgp = program.command('pgp').description('PGP encryption of stored mail');
  pgp
    .command('set <name> <keyfile>')
    .description("set a user's armored PGP public key (- reads stdin); mail is stored encrypted to it unless --no-encrypt")
    .option('--no-encrypt', 'keep the key but store mail in clear')
    .action((name: string, keyfile: string, o: { encrypt: boolean }, cmd: Command) =>
      withApp(cmd, async (app) => {
        const key = keyfile === '-' ? await readAll() : readFileSync(keyfile, 'utf8');
        const u = await app.accounts.setPgpKey(actor, name, key, o.encrypt);
        console.log(`${u.username}: key ${u.pgp!.fingerprint}, stored mail ${o.encrypt ? 'encrypted' : 'in clear'}`);
      }),
    );
  pgp
    .command('remove <name>')
    .description("remove a user's PGP key; mail is stored in clear again")
    .action((name: string, _o, cmd: Command) =>
      withApp(cmd, async (app) => {
        await app.accounts.setPgpKey(actor, name, null, false);
        console.log(`${name}: PGP key removed`);
      }),
    );

  const token = program.command('token').description('API tokens for automation (admin or auditor)');
  token
    .command('create')
    .description('create an API token and print it once')
    .addOption(new Option('--role <role>', 'what the token may do').choices(['admin', 'auditor']).makeOptionMandatory())
    .option('--description <text>', 'what it is for', '')
    .option('--expires <duration>', 'lifetime, e.g. 90d')
    .action((o: { role: 'admin' | 'auditor'; description: string; expires?: string }, cmd: Command) =>
      withApp(cmd, async (app) => {
        const ttl = optionalLifetime(o.expires, '--expires');
        const { token: t, record } = await app.sessions.createApiToken({ name: CLI_CREATOR }, o.role, o.description, ttl);
        console.log(`id:    ${record.id}\nrole:  ${record.role}\ntoken: ${t}`);
        console.error('The token is shown only now.');
      }),
    );
  token
    .command('list')
    .description('list API tokens')
    .action((_o, cmd: Command) =>
      withApp(cmd, async (app) => {
        const tokens = await app.store.apiTokens.list();
        console.log(
          table(
            ['ID', 'ROLE', 'DESCRIPTION', 'CREATED BY', 'CREATED', 'EXPIRES'],
            tokens.map((t) => [t.id, t.role, t.description, t.createdBy, iso(t.createdAt), iso(t.expiresAt)]),
          ),
        );
      }),
    );
  token
    .command('revoke <id>')
    .description('revoke an API token')
    .action((id: string, _o, cmd: Command) =>
      withApp(cmd, async (app) => {
        await app.sessions.revokeApiToken('cli', id);
        console.log(`revoked ${id}`);
      }),
    );

  program
    .command('audit')
    .description('query the audit log, newest first')
    .option('--user <name>', 'only this user')
    .option('--action <action>', 'e.g. auth, asp.create')
    .addOption(new Option('--result <result>').choices(['success', 'failure', 'error']))
    .option('--ip <address>')
    .option('--protocol <protocol>', 'imap, pop3, smtp, http, cli')
    .option('--since <when>', 'ISO date-time, or a duration back from now such as 24h')
    .option('--until <when>', 'ISO date-time, or a duration back from now')
    .option('--limit <n>', 'rows', '50')
    .option('--json', 'print JSON lines')
    .action(
      (
        o: { user?: string; action?: string; result?: string; ip?: string; protocol?: string; since?: string; until?: string; limit: string; json?: boolean },
        cmd: Command,
      ) =>
        withApp(cmd, async (app) => {
          const limit = Number(o.limit);
          if (!Number.isInteger(limit) || limit < 1 || limit > 10_000) throw invalid('--limit must be 1..10000');
          const now = app.clock.now();
          const filter = parseAuditFilter(
            { user: o.user, action: o.action, result: o.result, ip: o.ip, protocol: o.protocol, since: o.since, until: o.until },
            now,
          );
          const page = await app.store.audit.query({ ...filter, limit }, now);
          if (o.json) return page.events.forEach((e) => console.log(JSON.stringify(e)));
          console.log(
            table(
              ['TIME', 'ACTION', 'RESULT', 'REASON', 'USER', 'IP', 'PROTO', 'SCOPE', 'ASP'],
              page.events.map((e) => [
                iso(e.time),
                e.action,
                e.result,
                e.reason ?? '-',
                e.username ?? '-',
                e.ip ?? '-',
                e.protocol ?? '-',
                e.scope ?? '-',
                e.aspId ?? '-',
              ]),
            ),
          );
        }),
    );
  return program;
}

export async function main(argv: string[]): Promise<number> {
  try {
    await buildCli().exitOverride().parseAsync(argv);
    return 0;
  } catch (err) {
    const e = err as { code?: string; exitCode?: number; message?: string };
    if (typeof e.code === 'string' && e.code.startsWith('commander.')) {
      // commander already printed help or the usage error.
      return e.exitCode === 0 ? 0 : 1;
    }
    if (err instanceof PosternError && !err.temporary) {
      console.error(`postern: ${err.message}`);
      return 1;
    }
    console.error(`postern: ${err instanceof Error ? err.message : String(err)}`);
    return 2;
  }
}
