"""Webhooks: a signed delivery answered 202, against a `tell` through the same HTTP app.

A host on a real SQLite store (synchronous=FULL) runs one Claw with a GitHub-signed webhook; its
whole HTTP app (guard included) is called in process. Ours: `POST /hooks/c/gh` with a 2 KiB body
signed as GitHub signs it and a new delivery id each time: the signature check, the delivery's
commit, the 202. Baseline, in the same run: `POST /api/claws/c/tell` of the same body (its commit
and answer). Both messages are then run by the Claw alike.

    .venv/bin/python bench/hooks.py [DELIVERIES]
"""

from __future__ import annotations

import hashlib
import hmac
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio
import httpx2
from _figures import record

from clawmcp.host import Host
from clawmcp.manifest import load
from clawmcp.web import Endpoints, create_app

SECRET = "a-secret-for-the-benchmark"


def summary(name: str, ms: list[float]) -> float:
    median = statistics.median(ms)
    print(f"{name:<8} median {median:.2f} ms   p99 {sorted(ms)[max(int(len(ms) * 0.99) - 1, 0)]:.2f} ms")
    return median


async def main(deliveries: int) -> None:
    body = json.dumps({"action": "opened", "text": "x" * 2000}).encode()
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.yaml"
        path.write_text(
            "host: {data_dir: data}\nmodels: {m: {provider: scripted, rules: [{reply: hi}]}}\n"
            "claws:\n  c:\n    model: m\n    triggers:\n"
            f"      - name: gh\n        webhook: {{secret: {SECRET}, signature: github}}\n"
            "        prompt: '{{ body }}'\n"
        )
        host = Host(load([path]))
        app = create_app(host.service, Endpoints(host.service), host.listen)
        async with anyio.create_task_group() as tg:
            await tg.start(host.run)
            transport = httpx2.ASGITransport(app=app)
            async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:

                async def hook(n: int) -> float:
                    headers = {"X-Hub-Signature-256": signature, "X-GitHub-Delivery": f"d-{n}"}
                    started = time.perf_counter()
                    answer = await http.post("/hooks/c/gh", content=body, headers=headers)
                    assert answer.status_code == 202, answer.text
                    return (time.perf_counter() - started) * 1000

                async def tell(n: int) -> float:
                    started = time.perf_counter()
                    answer = await http.post("/api/claws/c/tell", json={"message": body.decode()})
                    assert answer.status_code == 200, answer.text
                    return (time.perf_counter() - started) * 1000

                ours: list[float] = []
                baseline: list[float] = []
                for n in range(deliveries):  # interleaved: both see the same load
                    baseline.append(await tell(n))
                    ours.append(await hook(n))
            tg.cancel_scope.cancel()
    base = summary("tell", baseline)
    median = summary("webhook", ours)
    record("signed webhook answered 202, median", median, base, "ms")


if __name__ == "__main__":
    anyio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 500)
