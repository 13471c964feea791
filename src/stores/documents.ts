// JSON (de)serialisation shared by stores that keep documents as text.
import { randomBytes } from 'node:crypto';

const DATE_KEYS = new Set(['createdAt', 'updatedAt', 'passwordChangedAt', 'passwordExpiresAt', 'enabledAt', 'expiresAt', 'time', 'usedAt', 'lastUsedAt']);

export function toJson(doc: unknown): string {
  return JSON.stringify(doc);
}

/** Revives Date fields by name, so free text that looks like a date stays text. */
export function fromJson<T>(text: string): T {
  return JSON.parse(text, (key, value) => (DATE_KEYS.has(key) && typeof value === 'string' ? new Date(value) : value)) as T;
}

/** 24 hex digits, the same shape as a MongoDB ObjectId, so ids look alike across stores. */
export function newId(): string {
  return randomBytes(12).toString('hex');
}

export interface AuditCursor {
  time: number;
  id: string;
}

export function encodeCursor(c: AuditCursor): string {
  return Buffer.from(JSON.stringify([c.time, c.id])).toString('base64url');
}

export function decodeCursor(s: string): AuditCursor | null {
  try {
    const [time, id] = JSON.parse(Buffer.from(s, 'base64url').toString('utf8')) as unknown[];
    return typeof time === 'number' && typeof id === 'string' ? { time, id } : null;
  } catch {
    return null;
  }
}
