// Core Web Vitals of the console itself, to POST /api/rum (docs/api.md).
//
// Metrics are queued and sent when the page is hidden or left, the moments
// the library reports its final values. `fetch` with `keepalive` rather
// than `sendBeacon`, so each beacon carries X-Request-ID and traceparent.

import { onCLS, onINP, onLCP, onTTFB, type Metric } from "web-vitals";
import { requestIds } from "./api";

interface Beacon {
  name: Metric["name"];
  value: number;
  rating: Metric["rating"];
  delta: number;
  id: string;
  navigationType: Metric["navigationType"];
}

// What the server accepts; one value out of range refuses the whole batch.
const LIMITS: Partial<Record<Metric["name"], number>> = { LCP: 120_000, INP: 120_000, TTFB: 120_000, CLS: 100 };
const BATCH = 50;
const queue: Beacon[] = [];

function report(m: Metric): void {
  const max = LIMITS[m.name];
  if (max === undefined || !(m.value >= 0 && m.value <= max)) return;
  // `entries` (DOM-bound performance entries) is left out: large, unread.
  queue.push({ name: m.name, value: m.value, rating: m.rating, delta: m.delta, id: m.id, navigationType: m.navigationType });
}

export function flushVitals(): void {
  while (queue.length > 0) {
    const body = JSON.stringify(queue.splice(0, BATCH));
    fetch("/api/rum", {
      method: "POST",
      keepalive: true,
      credentials: "omit",
      headers: { "Content-Type": "application/json", ...requestIds() },
      body,
    }).catch(() => {
      // A lost beacon is not worth the user's attention.
    });
  }
}

export function startVitals(): void {
  onCLS(report);
  onINP(report);
  onLCP(report);
  onTTFB(report);
  // On `document`, so this runs after the library's own listener (capture,
  // on window) has reported the final CLS, INP and LCP values.
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "hidden") flushVitals();
  });
  addEventListener("pagehide", flushVitals);
  // For end-to-end tests: send what is queued now.
  document.addEventListener("tepi:flush-vitals", flushVitals);
}
