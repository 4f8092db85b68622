"""Writes a real modelstore store with the modelstore library (the producer the importer reads):
two domains, several versions each, states, and one deleted model.

Usage: modelstore_store.py file <root-directory>
       modelstore_store.py s3 <bucket>        (AWS_ENDPOINT_URL etc. in the environment, e.g. MinIO;
                                               the bucket is created first: modelstore does not)
Prints JSON: {"uploads": [{"domain", "model_id", "deleted"}] in upload order, "states": {state: [[domain, model_id]]}}.
"""
import json
import os
import sys
import tempfile
import time

import boto3
from modelstore import ModelStore


def main() -> None:
    kind, where = sys.argv[1:3]
    if kind == "file":
        store = ModelStore.from_file_system(where, create_directory=True)
    else:
        boto3.client("s3").create_bucket(Bucket=where)
        store = ModelStore.from_aws_s3(where, region=os.environ.get("AWS_DEFAULT_REGION"))

    uploads = []
    work = tempfile.mkdtemp()

    def upload(domain: str, seed: str) -> str:
        # A model file (modelstore's "model_file" library): any file becomes artifacts.tar.gz.
        model = os.path.join(work, f"{seed}.json")
        with open(model, "w", encoding="utf-8") as f:
            json.dump({"seed": seed, "weights": list(range(50))}, f)
        meta = store.upload(domain, model=model)
        uploads.append({"domain": domain, "model_id": meta["model"]["model_id"], "deleted": False})
        return meta["model"]["model_id"]

    # intent's three models are uploaded within a second or so: modelstore's own order
    # (code.created) has whole seconds, so the importer's tie-break (the metadata file's time) is
    # what orders them. entities' are a second apart: a deleted model has no file of its upload
    # left to order it by, only code.created.
    intent = [upload("intent", f"intent-{i}") for i in range(1, 4)]
    entities = []
    for i in range(1, 4):
        time.sleep(1.05)
        entities.append(upload("entities", f"entities-{i}"))
    store.create_model_state("production")
    store.create_model_state("shadow")
    store.set_model_state("intent", intent[1], "production")
    store.set_model_state("intent", intent[2], "shadow")
    store.set_model_state("entities", entities[2], "production")
    store.delete_model("entities", entities[1], skip_prompt=True)
    for u in uploads:
        if u["model_id"] == entities[1]:
            u["deleted"] = True
    states = {
        "production": [["intent", intent[1]], ["entities", entities[2]]],
        "shadow": [["intent", intent[2]]],
    }
    print(json.dumps({"uploads": uploads, "states": states}))


if __name__ == "__main__":
    main()
