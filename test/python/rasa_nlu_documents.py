"""Writes Rasa NLU model documents into MongoDB with pymongo, the way Rasa NLU's MongoDB
persistence describes them (seeds/001): one document per model, keyed by ``model_name``, holding
the model directory's files as they are (README "Coming from modelstore / Rasa NLU" gives the
shape: ``files: [{path, content}]``, content as BSON binary, or text for text files).

Usage: rasa_nlu_documents.py <mongodb-uri> <database> <collection> <spec.json>
spec.json: {"documents": [{"model_name": ..., "files": {"path": {"text": "..."} | {"base64": "..."}},
            "raw": {...extra fields, e.g. to write a document that is not a model}}]}
Prints the inserted ids, one per line.
"""
import base64
import json
import sys

from bson.binary import Binary
from pymongo import MongoClient


def main() -> None:
    uri, database, collection, spec_file = sys.argv[1:5]
    with open(spec_file, encoding="utf-8") as f:
        spec = json.load(f)
    client = MongoClient(uri, serverSelectionTimeoutMS=5000)
    coll = client[database][collection]
    for doc in spec["documents"]:
        if "raw" in doc:
            document = doc["raw"]
        else:
            files = []
            for path, content in doc["files"].items():
                if "text" in content:
                    files.append({"path": path, "content": content["text"]})
                else:
                    files.append({"path": path, "content": Binary(base64.b64decode(content["base64"]))})
            document = {"model_name": doc["model_name"], "files": files}
        print(coll.insert_one(document).inserted_id)
    client.close()


if __name__ == "__main__":
    main()
