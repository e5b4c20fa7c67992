// Runs the graphql-http audit suite (auditServer) against a live server and prints JSON results.
// Usage: node graphql_http_audit.mjs URL API_KEY   (graphql-http resolved via NODE_PATH)
import { auditServer } from 'graphql-http';

const [url, apiKey] = process.argv.slice(2);
const fetchFn = (input, init = {}) => {
  const headers = new Headers(init.headers || {});
  headers.set('X-API-KEY', apiKey);
  return fetch(input, { ...init, headers });
};
const results = await auditServer({ url, fetchFn });
const out = [];
for (const r of results) {
  out.push({ id: r.id, name: r.name, status: r.status, reason: r.status === 'ok' ? null : r.reason });
}
process.stdout.write(JSON.stringify(out));
