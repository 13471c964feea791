import type { FastifyPluginAsync } from 'fastify';
import { parseAuditFilter, type AuditFilterInput } from '../../core/audit-filter.js';
import type { AuditEvent } from '../../core/types.js';
import { auditPage, errors } from '../schemas.js';
import { requireRole } from '../guards.js';
import type { ApiDeps } from '../deps.js';

interface AuditQs extends AuditFilterInput {
  limit?: number;
  cursor?: string;
  format?: 'json' | 'csv';
}

const CSV_COLUMNS = ['time', 'action', 'result', 'reason', 'username', 'ip', 'protocol', 'scope', 'aspId', 'sessionId', 'userAgent', 'actor'] as const;

/** RFC 4180 quoting, plus a leading quote for cells a spreadsheet would run as a formula. */
function csvCell(v: unknown): string {
  let s = v instanceof Date ? v.toISOString() : v === null || v === undefined ? '' : String(v);
  if (/^[=+\-@\t\r]/.test(s)) s = `'${s}`;
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export function toCsv(events: AuditEvent[]): string {
  const lines = [CSV_COLUMNS.join(',')];
  for (const e of events) lines.push(CSV_COLUMNS.map((c) => csvCell(e[c])).join(','));
  return `${lines.join('\r\n')}\r\n`;
}

/** Auditors (and admins): read-only queries of the audit log, newest first, with cursor paging. */
/** A Fastify plugin: its hooks and guards stay inside it. */
export const auditRoutes: FastifyPluginAsync<{ deps: ApiDeps }> = async (api, { deps: d }) => {
  api.get<{ Querystring: AuditQs }>(
    '/audit',
    {
      preHandler: requireRole('auditor', 'admin'),
      schema: {
        tags: ['audit'],
        summary: 'Query the audit log (JSON page, or CSV with format=csv)',
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            user: { type: 'string', maxLength: 254 },
            action: { type: 'string', maxLength: 40 },
            result: { type: 'string', enum: ['success', 'failure', 'error'] },
            ip: { type: 'string', maxLength: 64 },
            protocol: { type: 'string', enum: ['imap', 'pop3', 'smtp', 'lmtp', 'http', 'cli'] },
            since: { type: 'string', maxLength: 40, description: 'ISO date-time, or a duration back from now (24h)' },
            until: { type: 'string', maxLength: 40, description: 'ISO date-time, or a duration back from now' },
            limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 },
            cursor: { type: 'string', maxLength: 200 },
            format: { type: 'string', enum: ['json', 'csv'], default: 'json' },
          },
        },
        response: { 200: auditPage, ...errors(400, 401, 403, 503) },
      },
    },
    async (req, reply) => {
      const q = req.query;
      const now = d.clock.now();
      const { limit, cursor, format, ...filterInput } = q;
      const filter = parseAuditFilter(filterInput, now);
      const page = await d.store.audit.query({ ...filter, limit: limit ?? 100, cursor }, now);
      if (format === 'csv') {
        if (page.nextCursor) void reply.header('X-Next-Cursor', page.nextCursor);
        return reply
          .type('text/csv; charset=utf-8')
          .serializer((x: unknown) => x as string)
          .send(toCsv(page.events));
      }
      return page;
    },
  );
};
