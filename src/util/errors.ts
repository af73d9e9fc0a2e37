// What a caught value says, for messages: anything can be thrown.
export function errorMessage(error: unknown): string {
  if (error instanceof Error) return error.message || describeSilentError(error);
  return typeof error === 'string' ? error : String(error);
}

// Some libraries throw errors without a message (an aborted request, an SDK's bare status error): the
// warning then names what is known of it instead of ending in nothing.
function describeSilentError(error: Error): string {
  const code = (error as { code?: unknown }).code;
  const status = (error as { statusCode?: unknown }).statusCode;
  const facts = [
    typeof code === 'string' || typeof code === 'number' ? `code ${code}` : undefined,
    typeof status === 'number' ? `status ${status}` : undefined,
    error.cause === undefined ? undefined : `cause: ${errorMessage(error.cause)}`
  ].filter(fact => fact !== undefined);
  return `${error.name} without a message${facts.length > 0 ? ` (${facts.join(', ')})` : ''}`;
}
