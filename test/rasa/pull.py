"""One model pull the way Rasa's agent makes it (rasa/core/agent.py, _pull_model_and_fingerprint):
GET the model server's URL with the fingerprint (the ETag of the model it has) in If-None-Match,
through an aiohttp session carrying the endpoint's headers; 204 or 304 mean "keep yours", 200
brings the archive and its ETag (the next fingerprint).

Usage: pull.py URL OUT_DIR [FINGERPRINT] [AUTHORIZATION]; prints {"status", "etag", "file"} as JSON.
"""
import asyncio
import json
import os
import sys

import aiohttp


async def pull(url, out_dir, fingerprint, authorization):
    session_headers = {"Authorization": authorization} if authorization else None
    headers = {"If-None-Match": fingerprint} if fingerprint else {}
    async with aiohttp.ClientSession(headers=session_headers) as session:
        async with session.request("GET", url, timeout=aiohttp.ClientTimeout(total=300), headers=headers) as resp:
            if resp.status in (204, 304):
                return {"status": resp.status, "etag": None, "file": None}
            if resp.status != 200:
                return {"status": resp.status, "etag": None, "file": None, "body": await resp.text()}
            path = os.path.join(out_dir, resp.headers.get("filename", "model.tar.gz"))
            with open(path, "wb") as f:
                f.write(await resp.read())
            return {"status": 200, "etag": resp.headers.get("ETag"), "file": path}


if __name__ == "__main__":
    url, out_dir = sys.argv[1], sys.argv[2]
    fingerprint = sys.argv[3] if len(sys.argv) > 3 and sys.argv[3] else None
    authorization = sys.argv[4] if len(sys.argv) > 4 else None
    print(json.dumps(asyncio.run(pull(url, out_dir, fingerprint, authorization))))
