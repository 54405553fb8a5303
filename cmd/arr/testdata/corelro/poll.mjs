// poll.mjs BASE PATH CONTENT-TYPE BODY: submits BODY to BASE+PATH and
// follows the operation with @azure/core-lro's createHttpPoller, as a
// client generated for arr's /openapi.json does. It prints one JSON line
// when the operation is accepted ({"accepted": id}) and one at the end:
// {"ok": true, "result": …} or {"ok": false, "message": …}, with the
// poller's final state and the number of polls.
import { createHttpPoller } from "@azure/core-lro";

const [base, path, contentType, body] = process.argv.slice(2);

async function send(method, url, reqBody, ct) {
  const res = await fetch(url, {
    method,
    body: reqBody,
    headers: ct ? { "content-type": ct } : {},
    redirect: "manual", // the links must answer without a redirect
  });
  const text = await res.text();
  let parsed;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = text;
  }
  const headers = {};
  res.headers.forEach((v, k) => (headers[k] = v));
  return { flatResponse: parsed, rawResponse: { statusCode: res.status, headers, request: { method, url }, body: parsed } };
}

let polls = 0;
const lro = {
  sendInitialRequest: async () => {
    const r = await send("POST", base + path, body, contentType);
    console.log(JSON.stringify({ accepted: r.flatResponse?.id, status: r.rawResponse.statusCode }));
    return r;
  },
  sendPollRequest: async (url) => {
    polls++;
    return send("GET", new URL(url, base).href);
  },
};

const poller = createHttpPoller(lro, { intervalInMs: 200 });
try {
  const result = await poller.pollUntilDone();
  console.log(JSON.stringify({ ok: true, result: JSON.stringify(result), state: poller.operationState?.status, polls }));
} catch (e) {
  console.log(JSON.stringify({ ok: false, message: String(e?.message ?? e), state: poller.operationState?.status, polls }));
}
