// An Outpost plugin in AssemblyScript, built with the Extism AssemblyScript PDK: the
// guest ABI (pdk/src/abi.rs) is plain Extism, so any Extism PDK can implement it.
//
// `sending_event`: each request becomes one JSON message for the sink named by the
// `sink` setting: {"plugin": "as_forward", "call": N, "request": <the request as the
// agent sent it>}, N counting this instance's calls. Logs through Outpost's
// `outpost_log` host function. A missing `sink` setting fails `initialize` with the
// ABI's error convention (error message + status 1).

import { Host, Memory } from "@extism/as-pdk";
import { error_set } from "@extism/as-pdk/lib/env";

// Outpost's host functions live in `extism:host/user`; arguments are memory blocks.
@external("extism:host/user", "outpost_log")
declare function outpost_log(level: u64, message: u64): void;

let sink: string = "";
let calls: i64 = 0;

function bytes(s: string): Uint8Array {
  return Uint8Array.wrap(String.UTF8.encode(s));
}

function output(s: string): i32 {
  Host.output(bytes(s));
  return 0;
}

function fail(message: string): i32 {
  error_set(Memory.allocateBytes(bytes(message)).offset);
  return 1;
}

function log(level: string, message: string): void {
  const l = Memory.allocateBytes(bytes(level));
  const m = Memory.allocateBytes(bytes(message));
  outpost_log(l.offset, m.offset);
  l.free();
  m.free();
}

// The string value of `"key": "…"` in a flat JSON object (no escapes in the value).
function stringField(json: string, key: string): string | null {
  const at = json.indexOf('"' + key + '"');
  if (at < 0) return null;
  const colon = json.indexOf(":", at + key.length + 2);
  const open = json.indexOf('"', colon + 1);
  const close = json.indexOf('"', open + 1);
  if (colon < 0 || open < 0 || close < 0) return null;
  return json.slice(open + 1, close);
}

// Called by the runtime on assertion failures: a trap the agent reports as a fault.
export function abort(message: string | null, file: string | null, line: u32, column: u32): void {
  unreachable();
}

export function describe(): i32 {
  return output('{"name":"as_forward","version":"1.0.0","event_types":["sending_event"]}');
}

export function initialize(): i32 {
  const found = stringField(Host.inputString(), "sink");
  if (found == null || found.length == 0) return fail("missing setting `sink`");
  sink = found;
  return output("{}");
}

export function sending_event(): i32 {
  calls += 1;
  const request = Host.inputString();
  log("info", "as_forward: request " + calls.toString());
  const body = '{"plugin":"as_forward","call":' + calls.toString() + ',"request":' + request + "}";
  return output('{"messages":[{"sink":"' + sink + '","body":{"json":' + body + "}}]}");
}
