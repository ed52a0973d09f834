/** Option checks that throw at construction with a message naming the option and the bad value. */

function show(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean') return String(value);
  if (value === undefined) return 'undefined';
  if (value === null) return 'null';
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return Object.prototype.toString.call(value);
  }
}

interface Bounds {
  min: number;
  max?: number;
  fallback?: number;
}

function boundedNumber(kind: 'an integer' | 'a finite number', accept: (n: number) => boolean) {
  return (owner: string, name: string, value: unknown, { min, max, fallback }: Bounds): number => {
    if (value === undefined && fallback !== undefined) return fallback;
    if (typeof value !== 'number' || !accept(value)) {
      throw new TypeError(`${owner}: option "${name}" must be ${kind} >= ${min}, got ${show(value)}`);
    }
    if (value < min || (max !== undefined && value > max)) {
      const range = max === undefined ? `>= ${min}` : `between ${min} and ${max}`;
      throw new RangeError(`${owner}: option "${name}" must be ${range}, got ${show(value)}`);
    }
    return value;
  };
}

/** An integer >= min (and <= max when given). Missing is an error unless a fallback is given. */
export const integerOption = boundedNumber('an integer', Number.isInteger);

/** A finite number >= min, or the fallback when missing. */
export const numberOption = boundedNumber('a finite number', Number.isFinite);

export function oneOfOption<T extends string>(owner: string, name: string, value: unknown, allowed: readonly T[], fallback?: T): T {
  if (value === undefined && fallback !== undefined) return fallback;
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
    throw new TypeError(`${owner}: option "${name}" must be one of ${allowed.map((a) => `'${a}'`).join(' | ')}, got ${show(value)}`);
  }
  return value as T;
}

export function functionOption<F>(owner: string, name: string, value: unknown): F {
  if (typeof value !== 'function') {
    throw new TypeError(`${owner}: option "${name}" must be a function, got ${show(value)}`);
  }
  return value as F;
}

export function objectOption(owner: string, name: string, value: unknown): Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new TypeError(`${owner}: option "${name}" must be an object, got ${show(value)}`);
  }
  return value as Record<string, unknown>;
}

export function stringOption(owner: string, name: string, value: unknown, fallback?: string): string {
  if (value === undefined && fallback !== undefined) return fallback;
  if (typeof value !== 'string' || value.length === 0) {
    throw new TypeError(`${owner}: option "${name}" must be a non-empty string, got ${show(value)}`);
  }
  return value;
}
