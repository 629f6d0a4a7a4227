"""A stand-in for an API task in the load balancer tests: tiny, and it says which task answered."""

# a backend: 200 on every path (/ready, /health, /), naming itself (the task it is); on SIGTERM it stops
# accepting and finishes the requests in flight (a graceful stop, like the API's gunicorn)
BACKEND = """
import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = os.environ["NAME"].encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
srv = http.server.ThreadingHTTPServer(("0.0.0.0", 8000), H)
srv.daemon_threads = False  # server_close() waits for the requests in flight, as gunicorn does
import signal, threading
signal.signal(signal.SIGTERM, lambda *a: threading.Thread(target=srv.shutdown).start())
srv.serve_forever()
srv.server_close()
"""
