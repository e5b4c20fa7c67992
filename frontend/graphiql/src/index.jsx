// GraphiQL for this server, bundled with its dependencies (no CDN). The page that loads this script
// carries its configuration as JSON in <script id="graphiql-config">: the endpoint, the default headers
// (the development demo credential, when there is one) and the example tabs.
import React from "react";
import { createRoot } from "react-dom/client";
import { GraphiQL } from "graphiql";
import { createGraphiQLFetcher } from "@graphiql/toolkit";
import { parse, getOperationAST } from "graphql";
import { createClient } from "graphql-ws";
import "graphiql/style.css";

const config = JSON.parse(document.getElementById("graphiql-config").textContent);
const endpoint = new URL(config.endpoint, window.location.href);
const wsEndpoint = new URL(endpoint);
wsEndpoint.protocol = endpoint.protocol === "https:" ? "wss:" : "ws:";

// The default headers also go with requests made before the Headers tab is read (the schema's
// introspection at start-up); what the tab holds is sent on top of them.
const defaultHeaders = config.headers ? JSON.parse(config.headers) : {};
const httpFetcher = createGraphiQLFetcher({ url: endpoint.href, headers: defaultHeaders });

// Subscriptions go over graphql-ws (graphql-transport-ws). A browser cannot set headers on a WebSocket,
// so the Headers tab travels in connection_init's payload, which the server reads like HTTP headers;
// one connection per distinct set of headers.
const wsClients = new Map();
function wsClientFor(headers) {
  const key = JSON.stringify(headers || {});
  let client = wsClients.get(key);
  if (!client) {
    client = createClient({ url: wsEndpoint.href, connectionParams: { headers: headers || {} }, lazy: true });
    wsClients.set(key, client);
  }
  return client;
}

// GraphiQL can send the operation name of the tab shown before (switching to one of the example tabs
// and running it at once): a name the document does not define is dropped when it has one operation.
function withOperation(params) {
  try {
    const document = parse(params.query);
    const operations = document.definitions.filter((d) => d.kind === "OperationDefinition");
    let { operationName } = params;
    if (operationName && !operations.some((o) => o.name?.value === operationName) && operations.length === 1) {
      operationName = operations[0].name?.value;
      params = { ...params, operationName };
    }
    const operation = getOperationAST(document, operationName || undefined);
    return [params, operation?.operation === "subscription"];
  } catch {
    return [params, false];
  }
}

function fetcher(graphQLParams, options) {
  const [params, subscription] = withOperation(graphQLParams);
  if (!subscription) {
    return httpFetcher(params, options);
  }
  const client = wsClientFor({ ...defaultHeaders, ...(options?.headers || {}) });
  return {
    subscribe(sink) {
      const observer = typeof sink === "function" ? { next: sink } : sink;
      const dispose = client.subscribe(params, {
        next: (value) => observer.next?.(value),
        error: (error) => observer.error?.(error),
        complete: () => observer.complete?.(),
      });
      return { unsubscribe: dispose };
    },
  };
}

function App() {
  return (
    <GraphiQL
      fetcher={fetcher}
      defaultHeaders={config.headers}
      defaultTabs={config.tabs}
      defaultEditorToolsVisibility={config.headers ? "headers" : undefined}
    />
  );
}

createRoot(document.getElementById("graphiql")).render(<App />);
