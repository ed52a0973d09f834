import { randomUUID } from 'node:crypto';

/** `<prefix>-<8 hex>`: a queue, topic, group or subject name no other test (or run) uses. */
export const unique = (prefix: string) => `${prefix}-${randomUUID().slice(0, 8)}`;
