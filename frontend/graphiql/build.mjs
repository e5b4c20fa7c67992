// Bundles src/index.jsx (GraphiQL, React, graphql-ws) into ../../app/web/static/graphiql/, which the
// server serves at /graphiql/assets/ and a Python package ships as package data.
import { build } from "esbuild";
import { rmSync } from "node:fs";

const outdir = new URL("../../app/web/static/graphiql/", import.meta.url).pathname;
rmSync(outdir, { recursive: true, force: true });
await build({
  entryPoints: { graphiql: "src/index.jsx" },
  bundle: true,
  minify: true,
  format: "esm",
  target: ["es2020"],
  outdir,
  jsx: "automatic",
  define: { "process.env.NODE_ENV": '"production"' },
  loader: { ".woff": "file", ".woff2": "file", ".ttf": "file", ".svg": "file" },
  assetNames: "[name]-[hash]",
  legalComments: "linked",
  logLevel: "info",
});
