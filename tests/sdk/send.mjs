// Reports one exception with the real @sentry/node SDK to the DSN given as the first argument, then prints
// the Content-Encoding of every request the SDK's transport made (one JSON array).
import * as http from "node:http";
import * as Sentry from "@sentry/node";

const encodings = [];
const httpModule = {
  request(options, callback) {
    encodings.push(options.headers["content-encoding"] || "identity");
    return http.request(options, callback);
  },
};

Sentry.init({
  dsn: process.argv[2],
  release: "web@2.0.0",
  environment: "production",
  transportOptions: { httpModule },
});
Sentry.setTag("runtime", "node");
// 100 breadcrumbs of 400 characters: the envelope passes the SDK's 32 KiB threshold and is sent gzipped.
for (let i = 0; i < 100; i++) {
  Sentry.addBreadcrumb({ category: "step", message: `step ${i} `.padEnd(400, ".") });
}

function chargeCard() {
  throw new TypeError("card declined");
}

function checkout() {
  chargeCard();
}

try {
  checkout();
} catch (error) {
  console.log(Sentry.captureException(error));
}
await Sentry.flush(10000);
console.log(JSON.stringify(encodings));
