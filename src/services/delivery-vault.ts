import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { z } from 'zod';
import type { DeliverySealer } from './purchases.js';
import { zodToRejected } from './zod-errors.js';

const text = (max: number) => z.string().trim().min(1, 'must not be empty').max(max, `must be at most ${max} characters`);

export const deliverySchema = z.object({
  name: text(200),
  phone: z.string().regex(/^\+[1-9]\d{6,14}$/, 'must be an E.164 number such as "+919812345678"'),
  addressLine1: text(200),
  addressLine2: z.string().trim().max(200, 'must be at most 200 characters').nullish(),
  city: text(100),
  postalCode: text(20),
  country: z.string().regex(/^[A-Z]{2}$/, 'must be an ISO-3166 alpha-2 code such as "IN"'),
});
export type Delivery = z.infer<typeof deliverySchema>;

/**
 * Seals delivery details with AES-256-GCM: a random 96-bit IV per value, and the key's id
 * stored beside the ciphertext so keys can rotate ("v1.<keyId>.<iv>.<tag>.<data>", base64url).
 */
export class DeliveryVault {
  private readonly keys = new Map<string, Buffer>();
  private readonly currentId: string;

  /** The first key seals; all of them open (older keys stay for rotation). */
  constructor(keysBase64: string[]) {
    for (const k of keysBase64) {
      const key = Buffer.from(k, 'base64');
      if (key.length !== 32) throw new Error('DATA_KEY must be 32 bytes, base64');
      this.keys.set(createHash('sha256').update(key).digest('base64url').slice(0, 8), key);
    }
    this.currentId = [...this.keys.keys()][0];
  }

  seal(d: Delivery): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.keys.get(this.currentId)!, iv);
    const data = Buffer.concat([cipher.update(JSON.stringify(d), 'utf8'), cipher.final()]);
    return ['v1', this.currentId, iv.toString('base64url'), cipher.getAuthTag().toString('base64url'), data.toString('base64url')].join('.');
  }

  /** null when the value was sealed under a key we no longer have, or was tampered with. */
  open(sealed: string): Delivery | null {
    const [v, keyId, iv, tag, data] = sealed.split('.');
    const key = this.keys.get(keyId);
    if (v !== 'v1' || !key) return null;
    try {
      const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64url'));
      decipher.setAuthTag(Buffer.from(tag, 'base64url'));
      const plain = Buffer.concat([decipher.update(Buffer.from(data, 'base64url')), decipher.final()]);
      return JSON.parse(plain.toString('utf8')) as Delivery;
    } catch {
      return null;
    }
  }

  /** Validates and seals, for the purchase path; a bad value is a `Rejected` naming its field. */
  readonly sealer: DeliverySealer = (value, field) => {
    const parsed = deliverySchema.safeParse(value);
    if (!parsed.success) return { ok: false, rejected: zodToRejected(parsed.error, field) };
    return { ok: true, sealed: this.seal(parsed.data) };
  };
}
