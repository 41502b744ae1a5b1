import { describe, expect, it } from 'vitest';
import { newChildId, newId, saleIdOf } from '../src/services/ids.js';

describe('ids', () => {
  it('are 16 URL-safe characters without dots, and 200,000 in a row (many pool refills) never repeat', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 200_000; i++) {
      const id = newId();
      expect(id).toMatch(/^[A-Za-z0-9_-]{16}$/);
      seen.add(id);
    }
    expect(seen.size).toBe(200_000);
  });

  it('child ids carry their sale id', () => {
    const saleId = newId();
    expect(saleIdOf(newChildId(saleId))).toBe(saleId);
    expect(saleIdOf('no-dot')).toBeNull();
  });
});
