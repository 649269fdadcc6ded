"""The bench scripts' client of the testenv's apiserver: the server, CA and bearer token of
$KUBECONFIG (a kubeconfig hack/testenv.sh wrote), and one JSON request."""
import json
import os
import re
import ssl
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
