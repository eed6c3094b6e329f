"""Resolve credentials with boto3's default chain and print what was obtained.

Run by tests/clients.rs in a clean environment pointed at the proxy, either
through AWS_CONTAINER_CREDENTIALS_FULL_URI or AWS_EC2_METADATA_SERVICE_ENDPOINT.
Prints two lines on stdout: the access key id, then the name of the botocore
provider that produced it ("container-role" or "iam-role"). Nothing secret is
printed. Exits 1 when no credentials could be resolved.
"""

import sys

import boto3


def main() -> int:
    credentials = boto3.Session().get_credentials()
    if credentials is None:
        print("boto3 resolved no credentials", file=sys.stderr)
        return 1
    frozen = credentials.get_frozen_credentials()
    print(frozen.access_key)
    print(credentials.method)
    return 0


if __name__ == "__main__":
    sys.exit(main())
