// eslint-disable-next-line @typescript-eslint/no-explicit-any -- response bodies are checked field by field in tests
export type Json = any;

export interface HttpResult {
  status: number;
  body: Json;
  text: string;
}

/** One HTTP request with a JSON (or raw string) body; the answer parsed when it is JSON. */
export async function http(url: string, method: string, body?: unknown, headers: Record<string, string> = {}): Promise<HttpResult> {
  const res = await fetch(url, {
    method,
    headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
    ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
  });
  const text = await res.text();
  let parsed: unknown = null;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = null;
  }
  return { status: res.status, body: parsed, text };
}
