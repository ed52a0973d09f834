import { ValidationError } from './errors.js';
import { setData, type Message } from './message.js';

/**
 * Standard Schema v1 (standardschema.dev): the interface zod, valibot, arktype and others
 * implement. Copied here, as the spec invites, so that sluice validates with any of them without
 * depending on one (or on the spec's package).
 */
export interface StandardSchemaV1<Input = unknown, Output = Input> {
  readonly '~standard': StandardSchemaProps<Input, Output>;
}

export interface StandardSchemaProps<Input = unknown, Output = Input> {
  readonly version: 1;
  readonly vendor: string;
  readonly validate: (value: unknown, options?: { readonly libraryOptions?: Record<string, unknown> | undefined } | undefined) => StandardSchemaResult<Output> | Promise<StandardSchemaResult<Output>>;
  readonly types?: { readonly input: Input; readonly output: Output } | undefined;
}

export type StandardSchemaResult<Output> = { readonly value: Output; readonly issues?: undefined } | { readonly issues: ReadonlyArray<StandardSchemaIssue> };

export interface StandardSchemaIssue {
  readonly message: string;
  readonly path?: ReadonlyArray<PropertyKey | { readonly key: PropertyKey }> | undefined;
}

/** The output type of a schema (what `message.data` is). */
export type InferOutput<S> = S extends StandardSchemaV1<unknown, infer O> ? O : unknown;

/** An issue as the dead-letter header carries it: a dotted path and the library's message. */
export interface ValidationIssue {
  path: string;
  message: string;
}

export function describeIssues(issues: ReadonlyArray<StandardSchemaIssue>): ValidationIssue[] {
  return issues.map((issue) => ({
    path: (issue.path ?? []).map((segment) => String(typeof segment === 'object' && segment !== null ? segment.key : segment)).join('.'),
    message: issue.message,
  }));
}

/**
 * Parses a message's body as JSON and validates it: undefined when valid (`message.data` is then
 * set), a ValidationError when the body is not JSON or fails the schema (dead-lettered at once), or
 * another Error when the schema itself threw (an ordinary failure of the attempt). A schema that
 * validates asynchronously makes the answer a promise.
 */
export function validateMessage(schema: StandardSchemaV1, message: Message): Error | undefined | Promise<Error | undefined> {
  let value: unknown;
  try {
    value = message.json();
  } catch (error) {
    const text = error instanceof Error ? error.message : String(error);
    return new ValidationError(`message ${message.id}: ${text}`, [{ path: '', message: text }]);
  }
  let result: StandardSchemaResult<unknown> | Promise<StandardSchemaResult<unknown>>;
  try {
    result = schema['~standard'].validate(value);
  } catch (error) {
    return asError(error);
  }
  if (result instanceof Promise) return result.then((r) => checked(message, r), asError);
  return checked(message, result);
}

function checked(message: Message, result: StandardSchemaResult<unknown>): ValidationError | undefined {
  if (result.issues) {
    const issues = describeIssues(result.issues);
    const summary = issues
      .slice(0, 3)
      .map((i) => (i.path ? `${i.path}: ${i.message}` : i.message))
      .join('; ');
    return new ValidationError(`message ${message.id} failed the schema (${issues.length} issue${issues.length === 1 ? '' : 's'}): ${summary}`, issues);
  }
  setData(message, result.value);
  return undefined;
}

const asError = (error: unknown): Error => (error instanceof Error ? error : new Error(`schema validation threw ${String(error)}`));
