// Runs in a piscina worker thread: bcrypt work never touches the main event loop.
// Plain JavaScript so the same file serves the sources and the build.
import bcrypt from 'bcrypt';

export default function bcryptTask({ op, secret, hash, cost }) {
  return op === 'hash' ? bcrypt.hashSync(secret, cost) : bcrypt.compareSync(secret, hash);
}
