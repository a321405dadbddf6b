"""oras (the PyPI SDK) against a registry: push an artifact, push a referrer of it, pull
both back, and list the referrers. Prints what it saw as JSON for the Rust test to check.

usage: python oras_round_trip.py HOST:PORT WORKDIR
"""

import json
import os
import sys

import oras.client
import oras.oci
import requests

host, workdir = sys.argv[1], sys.argv[2]
os.chdir(workdir)
client = oras.client.OrasClient(hostname=host, insecure=True)

with open("artifact.txt", "w") as f:
    f.write("hello from oras\n")
with open("signature.txt", "w") as f:
    f.write("a signature of the artifact\n")

pushed = client.push(target=f"{host}/oras/demo:v1", files=["artifact.txt"], quiet=True)
digest = pushed.headers["Docker-Content-Digest"]
head = requests.head(
    f"http://{host}/v2/oras/demo/manifests/{digest}",
    headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
)
subject = oras.oci.Subject(
    mediaType=head.headers["Content-Type"], digest=digest, size=int(head.headers["Content-Length"])
)
referrer = client.push(
    target=f"{host}/oras/demo:signature", files=["signature.txt"], subject=subject, quiet=True
)

pulled = client.pull(target=f"{host}/oras/demo:v1", outdir="pulled-artifact")
pulled_referrer = client.pull(target=f"{host}/oras/demo:signature", outdir="pulled-referrer")
referrers = requests.get(f"http://{host}/v2/oras/demo/referrers/{digest}").json()
print(
    json.dumps(
        {
            "artifact": digest,
            "referrer": referrer.headers["Docker-Content-Digest"],
            "referrer_subject": referrer.headers.get("OCI-Subject"),
            "pulled": [open(p).read() for p in pulled],
            "pulled_referrer": [open(p).read() for p in pulled_referrer],
            "referrers": [m["digest"] for m in referrers["manifests"]],
        }
    )
)
