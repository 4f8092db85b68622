"""What Rasa's AWS persistor (rasa/nlu/persistor.py, AWSPersistor) does with a model archive:
boto3's resource API, `Object(bucket, key).put(Body=file)` to persist after `rasa train
--remote-storage aws`, and `Bucket(bucket).download_fileobj(key, file)` to retrieve for `rasa run
--remote-storage aws --model KEY`. The endpoint and credentials come from the environment
(AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION), as for Rasa.

Usage: persistor_s3.py persist|retrieve BUCKET KEY FILE
"""
import os
import sys

import boto3

action, bucket_name, key, path = sys.argv[1:5]
s3 = boto3.resource("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL"), region_name=os.environ.get("AWS_DEFAULT_REGION"))
if action == "persist":
    with open(path, "rb") as f:
        s3.Object(bucket_name, key).put(Body=f)
elif action == "retrieve":
    with open(path, "wb") as f:
        s3.Bucket(bucket_name).download_fileobj(key, f)
else:
    raise SystemExit(f"unknown action {action}")
