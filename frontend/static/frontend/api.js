// The REST API (docs/api.md) with the browser's session: JSON in and out, CSRF on writes.

function cookie(name) {
  const match = document.cookie.split("; ").find((row) => row.startsWith(`${name}=`));
  return match ? decodeURIComponent(match.slice(name.length + 1)) : "";
}

/** An API error: `code` from the body (docs/api.md), `status` 0 when the server was unreachable. */
export class ApiError extends Error {
  constructor(status, body) {
    super(body?.detail || (status ? `HTTP ${status}` : "network error"));
    this.status = status;
    this.code = body?.code || (status ? "" : "network");
    this.errors = body?.errors || [];
  }
}

export async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET") headers["X-CSRFToken"] = cookie("csrftoken");
  let response;
  try {
    response = await fetch(`/api${path}`, {
      method,
      headers,
      credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, null);
  }
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

export const listCharacters = () => api("/characters?limit=500");
export const listInstances = () => api("/instances?limit=500");
export const createInstance = (payload) => api("/instances", { method: "POST", body: payload });
export const getMemory = (id) => api(`/instances/${id}/memory`);
export const listConversations = (instanceId) =>
  api(`/conversations?instance_id=${encodeURIComponent(instanceId)}&limit=50`);
export const listMessages = (conversationId) => api(`/conversations/${conversationId}/messages?limit=500`);
export const reopenConversation = (conversationId) =>
  api(`/conversations/${conversationId}/reopen`, { method: "POST" });
