// One subscription through the graphql-sse client (distinct connections mode), as a browser or an
// edge function would run it. Usage: node subscribe.mjs URL KEY QUERY [VARIABLES_JSON]
// Prints one JSON line per event: {"next": payload}, {"error": ...} or {"complete": true}.
import { createClient } from "graphql-sse";

const [url, key, query, variables] = process.argv.slice(2);
const client = createClient({
  url,
  singleConnection: false,
  headers: key ? { "X-API-KEY": key } : {},
  retryAttempts: 0,
});
const print = (value) => process.stdout.write(JSON.stringify(value) + "\n");
client.subscribe(
  { query, variables: variables ? JSON.parse(variables) : undefined },
  {
    next: (payload) => print({ next: payload }),
    error: async (error) => {
      // A refusal before the stream (a bad credential, a spent budget) is a NetworkError holding the
      // response: its status and catalogued body are printed.
      if (error?.response) {
        print({ error: { status: error.response.status, body: await error.response.json() } });
      } else {
        print({ error: Array.isArray(error) ? error : String(error?.message ?? error) });
      }
      process.exit(0);
    },
    complete: () => {
      print({ complete: true });
      process.exit(0);
    },
  },
);
