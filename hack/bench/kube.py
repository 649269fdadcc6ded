"""The bench scripts' client of the testenv's apiserver: the server, CA and bearer token of
$KUBECONFIG (a kubeconfig hack/testenv.sh wrote), and one JSON request."""
import http.client
import json
import os
import re
import socket
import ssl
import urllib.parse
import urllib.request

_config = open(os.environ["KUBECONFIG"]).read()
server = re.search(r'server: "?([^",}\s]+)', _config).group(1)
_ca = re.search(r'certificate-authority: "?([^",}\s]+)', _config).group(1)
_token = re.search(r"token: ([^,}\s]+)", _config).group(1)
_context = ssl.create_default_context(cafile=_ca)


def open_url(method, path, body=None, content_type="application/json", timeout=60):
    """The response of one request (a file-like object: a watch is read line by line)."""
    req = urllib.request.Request(server + path, data=body, method=method)
    req.add_header("Authorization", f"Bearer {_token}")
    req.add_header("Content-Type", content_type)
    req.add_header("Accept", "application/json")
    return urllib.request.urlopen(req, context=_context, timeout=timeout)


def request(method, path, body=None, content_type="application/json"):
    """One request; its JSON response."""
    with open_url(method, path, body, content_type) as response:
        return json.loads(response.read() or b"{}")


def connect():
    """An open connection to the apiserver (TCP and TLS done), for a timed request that must not
    count the client's own handshake."""
    url = urllib.parse.urlsplit(server)
    conn = http.client.HTTPSConnection(url.hostname, url.port, context=_context, timeout=60)
    conn.connect()
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return conn


def request_on(conn, method, path, body=None, content_type="application/json"):
    """One request on an open connection (see connect); its JSON response."""
    headers = {"Authorization": f"Bearer {_token}", "Content-Type": content_type,
               "Accept": "application/json"}
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    data = response.read()
    if response.status >= 300:
        raise RuntimeError(f"{method} {path}: {response.status} {data[:200]!r}")
    return json.loads(data or b"{}")
