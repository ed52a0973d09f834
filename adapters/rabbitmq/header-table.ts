/**
 * Headers as amqplib decoded them, made fit to publish again. amqplib decodes every AMQP number
 * to a JS number and on encoding guesses the type back from the value: an integral double
 * outside ±2^63 (another client's -1.8e308, say) is guessed an int64 and throws, so a retry or
 * set-aside copy of such a message could never be published. Numbers that are not safe
 * integers go back as doubles; tables and arrays are walked; everything else is kept as it is.
 */
export function republishable(headers: Record<string, unknown> | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(headers ?? {})) out[name] = fieldValue(value);
  return out;
}

function fieldValue(value: unknown): unknown {
  if (typeof value === 'number') return Number.isSafeInteger(value) ? value : { '!': 'double', value };
  if (Array.isArray(value)) return value.map(fieldValue);
  // A Buffer is a byte array; an object with '!' is a typed value amqplib decoded (timestamp, decimal).
  if (value === null || typeof value !== 'object' || Buffer.isBuffer(value) || '!' in value) return value;
  return republishable(value as Record<string, unknown>);
}
