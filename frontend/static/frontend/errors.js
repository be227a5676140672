// Errors a person can read: a short message in the page's language for each error code of the
// API (docs/api.md) and the voice protocol (docs/protocol.md); the server's own words and the
// code go to the banner's collapsible details, never into the main message.

/**
 * @param {{code?: string, message?: string, status?: number, errors?: {field: string, message: string}[]}} error
 * @param {Record<string, string>} messages  the translated `errors` table from the page's strings
 * @returns {{text: string, details: string}}
 */
export function describeError(error, messages) {
  const code = error?.code || (error?.status === 401 ? "unauthorized" : error?.status === 403 ? "forbidden" : "");
  const text = messages[code] || (error?.status === 0 ? messages.network : messages.default);
  const lines = [];
  if (code) lines.push(`${code}${error?.status ? ` (HTTP ${error.status})` : ""}`);
  if (error?.message) lines.push(error.message);
  for (const field of error?.errors || []) {
    const line = field.field ? `${field.field}: ${field.message}` : field.message;
    if (!lines.includes(line) && field.message !== error.message) lines.push(line);
  }
  return { text, details: lines.join("\n") };
}
