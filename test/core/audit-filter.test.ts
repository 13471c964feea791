import { describe, expect, it } from 'vitest';
import { parseAuditFilter, parseTimeBound } from '../../src/core/audit-filter.js';

const NOW = new Date('2026-12-01T12:00:00Z');

describe('audit filters, one syntax for the CLI and the API', () => {
  it('takes times as ISO date-times or durations back from now', () => {
    expect(parseTimeBound('24h', 'since', NOW).toISOString()).toBe('2026-11-30T12:00:00.000Z');
    expect(parseTimeBound('2026-11-30T08:00:00Z', 'since', NOW).toISOString()).toBe('2026-11-30T08:00:00.000Z');
    expect(parseTimeBound('2026-11-30', 'since', NOW).toISOString()).toBe('2026-11-30T00:00:00.000Z');
    for (const bad of ['yesterday', '2026-13-40', '1.5h', '']) expect(() => parseTimeBound(bad, 'since', NOW), bad).toThrow(/ISO date-time/);
  });

  it('refuses what cannot be in the log instead of answering with nothing', () => {
    expect(
      parseAuditFilter({ user: 'Alice', action: 'asp.create', result: 'failure', protocol: 'imap', ip: '2001:db8::1', since: '7d', until: '1h' }, NOW),
    ).toMatchObject({
      username: 'alice',
      action: 'asp.create',
      since: new Date('2026-11-24T12:00:00Z'),
    });
    expect(() => parseAuditFilter({ action: 'login' }, NOW)).toThrow(/action must be one of auth, /);
    expect(() => parseAuditFilter({ result: 'failed' }, NOW)).toThrow(/result must be one of/);
    expect(() => parseAuditFilter({ protocol: 'imaps' }, NOW)).toThrow(/protocol must be one of/);
    expect(() => parseAuditFilter({ ip: '10.0.0.0/8' }, NOW)).toThrow(/ip must be/);
    expect(() => parseAuditFilter({ since: '1h', until: '2h' }, NOW)).toThrow(/since must be before until/);
  });
});
