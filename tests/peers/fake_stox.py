#!/usr/bin/python3
"""A stand-in for the `stox` binary, for the harness self-tests only (tests/tests/harness.rs).

Reads `--config FILE` (TOML), answers `GET /health` with 200 on `[admin] listen`, and counts
its starts in `[store] path`/starts, so a test can check that a restart reuses the store.
It speaks no SIP or XMPP: it checks the harness, not the gateway.
"""

import http.server
import os
import sys
import tomllib


def main():
    args = sys.argv[1:]
    config_path = args[args.index("--config") + 1]
    with open(config_path, "rb") as f:
        config = tomllib.load(f)
    store = config["store"]["path"]
    os.makedirs(store, exist_ok=True)
    starts_file = os.path.join(store, "starts")
    starts = 0
    if os.path.exists(starts_file):
        with open(starts_file) as f:
            starts = int(f.read().strip() or 0)
    with open(starts_file, "w") as f:
        f.write(str(starts + 1))

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = ('{"status":"ok","starts":%d}' % (starts + 1)).encode()
            self.send_response(200 if self.path == "/health" else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt, *a):
            sys.stderr.write("fake_stox: " + (fmt % a) + "\n")

    host, port = config["admin"]["listen"].rsplit(":", 1)
    server = http.server.HTTPServer((host, int(port)), Handler)
    print("fake_stox listening on", host, port, file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
