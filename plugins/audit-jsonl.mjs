// Appends every audit event as one JSON line to a file, for log shippers (Vector, Filebeat,
// a SIEM agent). Load it with [plugins] load = ["plugins/audit-jsonl.mjs"]. The file is
// POSTERN_AUDIT_JSONL, or audit.jsonl in the data directory.
import { appendFile } from 'node:fs/promises';
import { join } from 'node:path';

export default function auditJsonl({ config, onAuditEvent }) {
  const file = process.env.POSTERN_AUDIT_JSONL || join(config.server.data_dir, 'audit.jsonl');
  // One write at a time, so lines keep the order of the events.
  let last = Promise.resolve();
  onAuditEvent((event) => {
    last = last.then(() => appendFile(file, `${JSON.stringify(event)}\n`));
    return last;
  });
}
