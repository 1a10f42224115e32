#!/usr/bin/env python3
"""An OpAMP server for Outpost's fleet tests, on OpenTelemetry's own generated protobuf
classes (PyPI `opentelemetry-opamp-client`), so the agent's hand-written messages are
checked against an independent implementation of the wire format.

    opamp_server.py --http-port P --ws-port Q --control-port C --files DIR [--state FILE]
                    [--tls-cert F --tls-key F [--client-ca F]]

* POST /v1/opamp on the HTTP port: OpAMP over plain HTTP (HTTPS with --tls-cert;
  a client certificate required with --client-ca).
* ws://127.0.0.1:Q/v1/opamp: OpAMP over WebSocket (binary frames, a 0 header byte;
  wss:// with --tls-cert).
* GET /files/<name> on the control port (plain HTTP): package downloads from DIR
  (Range supported).
* The tests drive it over JSON on the control port:
  GET  /control/agents        every agent's last reported parts, message counts and sizes
  POST /control/config        {"toml": "..."} the remote config offered to all agents
  POST /control/packages      {"packages": {name: {"version", "file", "sha256",
                              "signature"}}} (hex), offered to all agents
  POST /control/garbage       the next answer (HTTP) or push (WebSocket) is garbage
  POST /control/full_state    the next answer asks for a full state report
  POST /control/throttle      {"seconds": N}: answer 503 with Retry-After for N s
  POST /control/slow_files    {"seconds": N}: each download takes about N s (a slow link)
  GET  /control/ranges        {"ranges": N}: downloads so far that resumed (a Range header)
"""

import argparse
import asyncio
import hashlib
import json
import os
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import websockets
from google.protobuf import json_format
from opentelemetry._opamp.proto import opamp_pb2 as pb

LOCK = threading.Lock()
AGENTS = {}  # uid hex -> dict of what it reported
OFFER = {"config": None, "config_hash": b"", "packages": None, "all_hash": b""}
FLAGS = {"garbage": False, "full_state": False, "throttle_until": 0.0, "file_seconds": 0.0}
WS_CLIENTS = {}  # uid hex -> websocket
LOOP = None
FILES = "."
STATE_FILE = None

CAPABILITIES = (
    pb.ServerCapabilities_AcceptsStatus
    | pb.ServerCapabilities_OffersRemoteConfig
    | pb.ServerCapabilities_AcceptsEffectiveConfig
    | pb.ServerCapabilities_OffersPackages
    | pb.ServerCapabilities_AcceptsPackagesStatus
)


def record(msg, transport, authorization, size):
    """Keeps what the agent said; parts left out are unchanged since last time."""
    uid = msg.instance_uid.hex()
    with LOCK:
        agent = AGENTS.setdefault(uid, {"messages": 0, "parts": {}, "sequence": []})
        agent["messages"] += 1
        agent["bytes"] = agent.get("bytes", 0) + size
        agent["last_size"] = size
        agent.setdefault("first_size", size)
        agent["transport"] = transport
        agent["authorization"] = authorization
        agent["sequence"].append(msg.sequence_num)
        agent["capabilities"] = msg.capabilities
        agent["disconnected"] = msg.HasField("agent_disconnect")
        agent["last_seen"] = time.time()
        for part in ("agent_description", "health", "effective_config",
                     "remote_config_status", "package_statuses"):
            if msg.HasField(part):
                agent["parts"][part] = json_format.MessageToDict(
                    getattr(msg, part), preserving_proto_field_name=True)
                agent.setdefault("reports", {}).setdefault(part, 0)
                agent["reports"][part] += 1
        if msg.HasField("effective_config"):
            files = msg.effective_config.config_map.config_map
            agent["effective_text"] = {k: f.body.decode("utf-8", "replace") for k, f in files.items()}
        if msg.HasField("remote_config_status"):
            agent["remote_hash"] = msg.remote_config_status.last_remote_config_hash
        if msg.HasField("package_statuses"):
            agent["packages_hash"] = msg.package_statuses.server_provided_all_packages_hash
        return agent


def answer(msg, first):
    """The ServerToAgent for `msg`: what the agent lacks of the current offers."""
    reply = pb.ServerToAgent(instance_uid=msg.instance_uid)
    with LOCK:
        agent = AGENTS[msg.instance_uid.hex()]
        if first or agent["messages"] == 1:
            reply.capabilities = CAPABILITIES
        if FLAGS["full_state"]:
            FLAGS["full_state"] = False
            reply.flags = pb.ServerToAgentFlags_ReportFullState
        if OFFER["config"] is not None and agent.get("remote_hash") != OFFER["config_hash"]:
            agent["configs_sent"] = agent.get("configs_sent", 0) + 1
            reply.remote_config.config_hash = OFFER["config_hash"]
            entry = reply.remote_config.config.config_map[""]
            entry.body = OFFER["config"]
            entry.content_type = "text/toml"
        if (OFFER["packages"] is not None
                and agent.get("capabilities", 0) & pb.AgentCapabilities_AcceptsPackages
                and agent.get("packages_hash") != OFFER["all_hash"]):
            reply.packages_available.all_packages_hash = OFFER["all_hash"]
            for name, p in OFFER["packages"].items():
                offered = reply.packages_available.packages[name]
                offered.type = pb.PackageType_TopLevel
                offered.version = p["version"]
                offered.hash = bytes.fromhex(p["sha256"]) + p["version"].encode()
                offered.file.download_url = p["url"]
                offered.file.content_hash = bytes.fromhex(p["sha256"])
                offered.file.signature = bytes.fromhex(p.get("signature", ""))
    return reply


def save_offer():
    """The offers survive a restart of the server (`--state`)."""
    if STATE_FILE:
        with LOCK:
            view = {"config": OFFER["config"].decode() if OFFER["config"] is not None else None,
                    "packages": OFFER["packages"]}
        with open(STATE_FILE, "w") as f:
            json.dump(view, f)


def load_offer():
    if STATE_FILE and os.path.exists(STATE_FILE):
        with open(STATE_FILE) as f:
            view = json.load(f)
        if view["config"] is not None:
            set_config(view["config"].encode())
        if view["packages"] is not None:
            set_packages(view["packages"])


def set_config(text):
    with LOCK:
        OFFER["config"] = text
        OFFER["config_hash"] = hashlib.sha256(text).digest()


def set_packages(packages):
    with LOCK:
        OFFER["packages"] = packages
        OFFER["all_hash"] = hashlib.sha256(json.dumps(packages, sort_keys=True).encode()).digest()


def take_garbage():
    with LOCK:
        garbage, FLAGS["garbage"] = FLAGS["garbage"], False
    return garbage


GARBAGE = b"\xff\xff\xff\xff\x0f\x12\x99garbage, not protobuf"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def body(self):
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def send(self, status, body=b"", ctype="application/json", headers=(), seconds=0.0):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if seconds <= 0:
            self.wfile.write(body)
            return
        # In 16 slices over `seconds`, as a slow link would deliver it.
        step = max(1, -(-len(body) // 16))
        for i in range(0, len(body), step):
            time.sleep(seconds / 16)
            self.wfile.write(body[i:i + step])
            self.wfile.flush()

    def do_GET(self):
        if self.path == "/control/ranges":
            return self.send(200, json.dumps({"ranges": FLAGS.get("ranges", 0)}).encode())
        if self.path == "/control/throttled":
            return self.send(200, json.dumps({"throttled": FLAGS.get("throttled", 0)}).encode())
        if self.path == "/control/agents":
            with LOCK:
                view = {uid: {k: v for k, v in a.items() if k not in ("remote_hash", "packages_hash")}
                        for uid, a in AGENTS.items()}
            return self.send(200, json.dumps(view).encode())
        if self.path.startswith("/files/"):
            return self.serve_file(self.path[len("/files/"):])
        self.send(404, b"{}")

    def serve_file(self, name):
        path = os.path.join(FILES, os.path.basename(name))
        if not os.path.exists(path):
            return self.send(404, b"{}")
        data = open(path, "rb").read()
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            FLAGS["ranges"] = FLAGS.get("ranges", 0) + 1
            start = int(rng[len("bytes="):].split("-")[0])
            if start >= len(data):
                return self.send(416, b"", "application/octet-stream")
            return self.send(206, data[start:], "application/octet-stream",
                             [("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")],
                             FLAGS["file_seconds"])
        self.send(200, data, "application/octet-stream", seconds=FLAGS["file_seconds"])

    def do_POST(self):
        body = self.body()
        if self.path == "/v1/opamp":
            return self.opamp(body)
        req = json.loads(body or b"{}")
        if self.path == "/control/config":
            set_config(req["toml"].encode())
            save_offer()
            push_all()
            return self.send(200, json.dumps({"hash": OFFER["config_hash"].hex()}).encode())
        if self.path == "/control/packages":
            set_packages(req["packages"])
            save_offer()
            push_all()
            return self.send(200, b"{}")
        if self.path == "/control/garbage":
            FLAGS["garbage"] = True
            push_all()
            return self.send(200, b"{}")
        if self.path == "/control/full_state":
            FLAGS["full_state"] = True
            push_all()
            return self.send(200, b"{}")
        if self.path == "/control/throttle":
            FLAGS["throttle_until"] = time.time() + req["seconds"]
            return self.send(200, b"{}")
        if self.path == "/control/slow_files":
            FLAGS["file_seconds"] = float(req["seconds"])
            return self.send(200, b"{}")
        self.send(404, b"{}")

    def opamp(self, body):
        if self.headers.get("Content-Type") != "application/x-protobuf":
            return self.send(415, b"", "text/plain")
        if time.time() < FLAGS["throttle_until"]:
            FLAGS["throttled"] = FLAGS.get("throttled", 0) + 1
            return self.send(503, b"", "text/plain", [("Retry-After", "1")])
        msg = pb.AgentToServer()
        msg.ParseFromString(body)
        uid = self.headers.get("OpAMP-Instance-UID", "")
        if uid.replace("-", "") != msg.instance_uid.hex():
            return self.send(400, b"OpAMP-Instance-UID does not match", "text/plain")
        agent = record(msg, "http", self.headers.get("Authorization"), len(body))
        if take_garbage():
            return self.send(200, GARBAGE, "application/x-protobuf")
        reply = answer(msg, agent["messages"] == 1)
        self.send(200, reply.SerializeToString(), "application/x-protobuf")


async def ws_handler(ws):
    uid = None
    first = True
    try:
        async for frame in ws:
            if not isinstance(frame, bytes) or not frame or frame[0] != 0:
                await ws.close(1002, "OpAMP frames are binary with a 0 header")
                return
            msg = pb.AgentToServer()
            msg.ParseFromString(frame[1:])
            uid = msg.instance_uid.hex()
            with LOCK:
                WS_CLIENTS[uid] = ws
            record(msg, "ws", ws.request.headers.get("Authorization"), len(frame) - 1)
            if msg.HasField("agent_disconnect"):
                continue
            if take_garbage():
                await ws.send(b"\x00" + GARBAGE)
                continue
            await ws.send(b"\x00" + answer(msg, first).SerializeToString())
            first = False
    except websockets.ConnectionClosed:
        pass
    finally:
        with LOCK:
            if uid and WS_CLIENTS.get(uid) is ws:
                del WS_CLIENTS[uid]


def push_all():
    """WebSocket agents get new offers without waiting for their next message."""
    if LOOP is None:
        return

    async def push():
        with LOCK:
            clients = list(WS_CLIENTS.items())
        for uid, ws in clients:
            msg = pb.AgentToServer(instance_uid=bytes.fromhex(uid))
            try:
                if take_garbage():
                    await ws.send(b"\x00" + GARBAGE)
                    continue
                await ws.send(b"\x00" + answer(msg, False).SerializeToString())
            except websockets.ConnectionClosed:
                pass

    asyncio.run_coroutine_threadsafe(push(), LOOP)


async def main(args):
    global LOOP, FILES, STATE_FILE
    FILES = args.files
    STATE_FILE = args.state
    load_offer()
    LOOP = asyncio.get_running_loop()
    tls = None
    if args.tls_cert:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(args.tls_cert, args.tls_key)
        if args.client_ca:
            tls.verify_mode = ssl.CERT_REQUIRED
            tls.load_verify_locations(args.client_ca)
    for port, secure in ((args.http_port, True), (args.control_port, False)):
        http = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        http.daemon_threads = True
        if secure and tls is not None:
            http.socket = tls.wrap_socket(http.socket, server_side=True)
        threading.Thread(target=http.serve_forever, daemon=True).start()
    async with websockets.serve(ws_handler, "127.0.0.1", args.ws_port, ssl=tls,
                                compression=None, max_size=64 << 20):
        print("opamp test server ready", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--ws-port", type=int, required=True)
    parser.add_argument("--control-port", type=int, required=True)
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    parser.add_argument("--client-ca")
    parser.add_argument("--files", default=".")
    parser.add_argument("--state")
    asyncio.run(main(parser.parse_args()))
