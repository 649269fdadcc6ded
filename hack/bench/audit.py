#!/usr/bin/env python3
"""Requests per client from the testenv's audit log (hack/testenv.sh records only the bench
identities, `bench-<client>`, at Request level): the lines between two byte offsets, counted by
client, verb and resource, with the bytes of the request bodies the clients sent.

    audit.py LOG START END IMPL N >>requests-by-client.tsv
    audit.py LOG START END IMPL N --total    (the controllers' requests/N, leases aside)
Prints "IMPL  N  CLIENT  VERB  RESOURCE  REQUESTS/N  BYTES/N" lines. A dry-run is its own verb
(`patch (dry-run)`); watches are counted when they end, so those still open at END are not."""
import collections
import json
import sys
import urllib.parse

log, start, end, impl, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
total = sys.argv[6:] == ["--total"]
with open(log, "rb") as f:
    f.seek(start)
    chunk = f.read(max(0, end - start))
counts = collections.Counter()
sent = collections.Counter()
# (the last line may be cut at END: only whole lines count)
for line in chunk.split(b"\n"):
    try:
        event = json.loads(line)
    except ValueError:
        continue
    user = event.get("user", {}).get("username", "")
    if not user.startswith("bench-"):
        continue
    ref = event.get("objectRef") or {}
    resource = ref.get("resource") or event.get("requestURI", "").split("?")[0]
    if ref.get("subresource"):
        resource += "/" + ref["subresource"]
    verb = event.get("verb", "")
    query = urllib.parse.parse_qs(urllib.parse.urlparse(event.get("requestURI", "")).query)
    if "dryRun" in query:
        verb += " (dry-run)"
    key = (user.removeprefix("bench-"), verb, resource)
    counts[key] += 1
    body = event.get("requestObject")
    if body is not None:
        sent[key] += len(json.dumps(body, separators=(",", ":")))
if total:
    # Leader election is a deployment choice (both stacks renew a Lease while they run).
    print(f"{sum(c for (client, _, r), c in counts.items() if client != 'floor' and r != 'leases') / n:.2f}")
    sys.exit(0)
for (client, verb, resource), c in sorted(counts.items()):
    print(f"{impl}\t{n}\t{client}\t{verb}\t{resource}\t{c / n:.2f}\t{sent[(client, verb, resource)] / n:.0f}")
