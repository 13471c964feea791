import { generate, generateSecret, generateURI, verify } from 'otplib';

export const TOTP_PERIOD = 30;

export function newTotpSecret(): string {
  return generateSecret();
}

export function totpUri(secret: string, issuer: string, label: string): string {
  return generateURI({ issuer, label, secret });
}

/** For tests and tools: the code an authenticator app shows at `at`. */
export function totpCode(secret: string, at: Date): Promise<string> {
  return generate({ secret, epoch: Math.floor(at.getTime() / 1000) });
}

/**
 * Checks a code within ±windowSteps of `at`. Returns the matched time step, or null.
 * Codes at or before `afterStep` are refused: a code is accepted once for its whole window.
 */
export async function checkTotp(secret: string, code: string, at: Date, windowSteps: number, afterStep: number | null): Promise<number | null> {
  if (!/^\d{6}$/.test(code.trim())) return null;
  const result = await verify({
    secret,
    token: code.trim(),
    epoch: Math.floor(at.getTime() / 1000),
    epochTolerance: windowSteps * TOTP_PERIOD,
    ...(afterStep !== null ? { afterTimeStep: afterStep } : {}),
  }).catch(() => ({ valid: false as const }));
  if (!result.valid) return null;
  return 'timeStep' in result ? result.timeStep : Math.floor(at.getTime() / 1000 / TOTP_PERIOD) + result.delta;
}
