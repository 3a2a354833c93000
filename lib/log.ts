/**
 * Every error this plugin logs goes through here first. A store's error text
 * may quote the key it failed on (connect-redis: `GET sess:<id> failed`), and
 * an app's rule may throw with session data in its message: the log keeps the
 * error's type, code and text, with the raw session id cut out of all of them.
 */
export interface LoggedError {
  type: string
  message: string
  code?: string
  stack?: string
}

export function redactError (error: unknown, sessionId: string | undefined): LoggedError {
  // The id as is, and as it appears URL-encoded (in a cookie, a key some stores encode).
  const forms = sessionId === undefined || sessionId.length === 0 ? [] : [...new Set([sessionId, encodeURIComponent(sessionId)])]
  const cut = (text: string): string => forms.reduce((result, form) => result.split(form).join('<session id>'), text)
  if (!(error instanceof Error)) return { type: typeof error, message: cut(String(error)) }
  const logged: LoggedError = { type: error.name, message: cut(error.message) }
  const code = (error as { code?: unknown }).code
  if (typeof code === 'string') logged.code = cut(code)
  if (typeof error.stack === 'string') logged.stack = cut(error.stack)
  return logged
}
