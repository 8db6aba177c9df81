// The runtime floor for `make bench`: the least a Worker can do per request
// (a fresh Response, no routing, no headers beyond its type). What Tepi and
// Hono cost above this is theirs; this much is workerd's own.
const BODY = '{"status":"ok"}';

export default {
  fetch() {
    return new Response(BODY, { headers: { "content-type": "application/json" } });
  },
};
