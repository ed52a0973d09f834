/**
 * `scheme://user:password@`: the password runs to the last `@` of the URL, because one that was
 * not percent-encoded may itself hold `/`, `?`, `#` or `@` (the URL then fails to parse, and its
 * text reaches error messages as the user wrote it).
 */
const CREDENTIALS = /([a-z][a-z0-9+.-]*:\/\/)([^:@/\s]*):(\S*)@/gi;

/** A broker URL fit for logs and error messages: the password is replaced by `***`. */
export function redactUrl(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/)([^:@/\s]*):(.*)@/is, (_m, scheme: string, user: string) => `${scheme}${user}:***@`);
}

/** Redacts every URL-with-credentials inside a longer text (an error message, a log line). */
export function redactText(text: string): string {
  return text.replace(CREDENTIALS, (_m, scheme: string, user: string) => `${scheme}${user}:***@`);
}

/** An error's message (any other thrown value as text) fit for logs and error messages: passwords in URLs removed. */
export function redactError(error: unknown): string {
  return redactText(error instanceof Error ? error.message : String(error));
}
